-- The host's points also carry the file system under Docker's data root
-- (images, containers' layers, volumes), beside Berth's data directory's.
ALTER TABLE metric_points
    ADD COLUMN docker_disk_used BIGINT,
    ADD COLUMN docker_disk_total BIGINT;
