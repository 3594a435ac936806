ALTER TABLE database_services DROP COLUMN redis_aof;
ALTER TABLE database_services DROP COLUMN root_password;
