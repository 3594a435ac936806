-- MySQL and MariaDB services get a root password of their own, sealed like the
-- app user's (services made before keep using the one password for both: NULL).
ALTER TABLE database_services ADD COLUMN root_password TEXT;
-- Redis services persist with an append-only file as well as RDB snapshots
-- (new services; those made before keep RDB snapshots only, as they run now).
ALTER TABLE database_services ADD COLUMN redis_aof BOOLEAN NOT NULL DEFAULT false;
