ALTER TABLE database_services
    DROP CONSTRAINT database_services_environment_id_fkey,
    ADD CONSTRAINT database_services_environment_id_fkey
        FOREIGN KEY (environment_id) REFERENCES environments (id) ON DELETE CASCADE;
ALTER TABLE applications
    DROP CONSTRAINT applications_environment_id_fkey,
    ADD CONSTRAINT applications_environment_id_fkey
        FOREIGN KEY (environment_id) REFERENCES environments (id) ON DELETE CASCADE;
DROP INDEX applications_repo_key_idx;
ALTER TABLE applications DROP COLUMN repo_key, DROP COLUMN ssh_known_hosts, DROP COLUMN legacy_names;
ALTER TABLE database_services DROP COLUMN legacy_names;
ALTER TABLE database_services DROP CONSTRAINT database_services_org_name_key;
ALTER TABLE database_services ADD CONSTRAINT database_services_name_key UNIQUE (name);
ALTER TABLE applications DROP CONSTRAINT applications_org_name_key;
ALTER TABLE applications ADD CONSTRAINT applications_name_key UNIQUE (name);
DROP TABLE setup_tokens;
DROP TABLE instance_settings;
ALTER TABLE users DROP COLUMN instance_admin;
