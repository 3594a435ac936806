-- The perimeter: instance administrators and instance settings, the one-time
-- setup token, names unique per organization (not per server), resources named
-- from IDs, pinned ssh host keys, and an indexed repository key for webhooks.

-- Instance administrators hold the powers over the host itself. The owners of
-- the organization that onboarded the instance are its first administrators.
ALTER TABLE users ADD COLUMN instance_admin BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE users SET instance_admin = TRUE
 WHERE id IN (SELECT m.user_id FROM memberships m JOIN instance i ON i.admin_organization_id = m.organization_id
               WHERE m.role = 'owner');

-- Settings an instance administrator changes from the UI.
CREATE TABLE instance_settings (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    -- Who may create organizations: instance administrators only, or anyone signed in.
    org_creation TEXT NOT NULL DEFAULT 'admins' CHECK (org_creation IN ('admins', 'anyone')),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO instance_settings DEFAULT VALUES;

-- One-time setup tokens: each process that starts before onboarding prints one;
-- onboarding needs one of them, and takes them all away.
CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Names are unique per organization; generated domains stay unique server-wide.
ALTER TABLE applications DROP CONSTRAINT applications_name_key;
ALTER TABLE applications ADD CONSTRAINT applications_org_name_key UNIQUE (organization_id, name);
ALTER TABLE database_services DROP CONSTRAINT database_services_name_key;
ALTER TABLE database_services ADD CONSTRAINT database_services_org_name_key UNIQUE (organization_id, name);

-- Volumes and service containers are named from IDs. Those made before keep
-- their names (their data lives there): `legacy_names` marks them.
ALTER TABLE applications ADD COLUMN legacy_names BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE applications SET legacy_names = TRUE;
ALTER TABLE database_services ADD COLUMN legacy_names BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE database_services SET legacy_names = TRUE;

-- ssh host keys are pinned per application on its first clone.
ALTER TABLE applications ADD COLUMN ssh_known_hosts TEXT;

-- Webhooks find apps by their repository, normalised (host/owner/name, lower case).
ALTER TABLE applications ADD COLUMN repo_key TEXT;
CREATE INDEX applications_repo_key_idx ON applications (repo_key) WHERE repo_key IS NOT NULL;

-- Apps and databases leave only through their own delete paths (containers,
-- routes, volumes): deleting an environment that still holds one is refused.
ALTER TABLE applications
    DROP CONSTRAINT applications_environment_id_fkey,
    ADD CONSTRAINT applications_environment_id_fkey
        FOREIGN KEY (environment_id) REFERENCES environments (id) ON DELETE RESTRICT;
ALTER TABLE database_services
    DROP CONSTRAINT database_services_environment_id_fkey,
    ADD CONSTRAINT database_services_environment_id_fkey
        FOREIGN KEY (environment_id) REFERENCES environments (id) ON DELETE RESTRICT;
