DROP TABLE schedule_slots;
DROP TABLE restores;
DROP TABLE backups;
DROP TABLE backup_schedules;
DROP TABLE s3_destinations;
DROP TABLE database_services;
ALTER TABLE instance DROP COLUMN admin_organization_id;
