ALTER TABLE metric_points
    DROP COLUMN docker_disk_used,
    DROP COLUMN docker_disk_total;
