-- Database services, S3 destinations, backups (with their restore drills), restores
-- and backup schedules. Rows are the truth and the work queue: a backup, a drill
-- or a restore exists as a row before anything runs, and workers claim rows.

-- The organization that onboarded the instance: its owners and admins manage
-- instance-wide things such as backups of Berth's own database.
ALTER TABLE instance ADD COLUMN admin_organization_id UUID REFERENCES organizations (id) ON DELETE SET NULL;
UPDATE instance SET admin_organization_id = (SELECT id FROM organizations ORDER BY created_at LIMIT 1);

CREATE TABLE database_services (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    environment_id UUID NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    -- A DNS label, and the service's hostname on the shared network: unique on the server.
    name TEXT NOT NULL UNIQUE,
    engine TEXT NOT NULL CHECK (engine IN ('postgres', 'mysql', 'mariadb', 'mongo', 'redis')),
    image TEXT NOT NULL,
    database_name TEXT,
    username TEXT,
    -- Sealed with the instance key.
    password TEXT NOT NULL,
    volume TEXT NOT NULL,
    cpu_millis INTEGER CHECK (cpu_millis > 0),
    memory_mb INTEGER CHECK (memory_mb > 0),
    external_bind TEXT,
    external_port INTEGER CHECK (external_port BETWEEN 1 AND 65535),
    -- What the operator asked for; the container's actual state is read from Docker.
    desired TEXT NOT NULL DEFAULT 'running' CHECK (desired IN ('running', 'stopped')),
    -- Why the last start/rebuild (which runs in the background: pulls are slow) failed.
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (external_bind, external_port)
);
CREATE INDEX database_services_env_idx ON database_services (environment_id);
CREATE INDEX database_services_org_idx ON database_services (organization_id);

CREATE TABLE s3_destinations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    region TEXT NOT NULL,
    bucket TEXT NOT NULL,
    prefix TEXT NOT NULL DEFAULT '',
    access_key TEXT NOT NULL,
    -- Sealed with the instance key.
    secret_key TEXT NOT NULL,
    path_style BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name)
);

CREATE TABLE backup_schedules (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- NULL: Berth's own database.
    service_id UUID REFERENCES database_services (id) ON DELETE CASCADE,
    destination_id UUID NOT NULL REFERENCES s3_destinations (id) ON DELETE CASCADE,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    keep_last INTEGER NOT NULL CHECK (keep_last BETWEEN 1 AND 1000),
    -- Run a restore drill after each scheduled backup.
    drill BOOLEAN NOT NULL DEFAULT FALSE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    -- The newest slot taken; slots at or before it never run again.
    last_slot TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX backup_schedules_service_idx ON backup_schedules (service_id);

CREATE TABLE backups (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- NULL: Berth's own database (or a deleted service: `service_name` remains).
    service_id UUID REFERENCES database_services (id) ON DELETE SET NULL,
    service_name TEXT NOT NULL,
    engine TEXT NOT NULL,
    destination_id UUID NOT NULL REFERENCES s3_destinations (id) ON DELETE CASCADE,
    schedule_id UUID REFERENCES backup_schedules (id) ON DELETE SET NULL,
    trigger TEXT NOT NULL CHECK (trigger IN ('manual', 'schedule', 'bucket')),
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    object_key TEXT,
    -- The open multipart upload, so a reaper can abort it if the worker dies.
    upload_id TEXT,
    size_bytes BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    worker_id TEXT,
    heartbeat_at TIMESTAMPTZ,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    -- Set when retention deleted the object.
    pruned_at TIMESTAMPTZ,
    drill_status TEXT CHECK (drill_status IN ('queued', 'running', 'verified', 'failed')),
    drill_detail TEXT,
    drill_worker_id TEXT,
    drill_heartbeat_at TIMESTAMPTZ,
    drill_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX backups_service_idx ON backups (service_id, created_at DESC);
CREATE INDEX backups_queued_idx ON backups (created_at) WHERE status = 'queued';
CREATE INDEX backups_drill_queued_idx ON backups (created_at) WHERE drill_status = 'queued';
-- One dump of a service at a time.
CREATE UNIQUE INDEX backups_one_running_per_service ON backups (service_id) WHERE status = 'running';

CREATE TABLE restores (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    backup_id UUID NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    service_id UUID NOT NULL REFERENCES database_services (id) ON DELETE CASCADE,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    bytes BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    worker_id TEXT,
    heartbeat_at TIMESTAMPTZ,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX restores_service_idx ON restores (service_id, created_at DESC);
CREATE UNIQUE INDEX restores_one_running_per_service ON restores (service_id) WHERE status = 'running';

-- Each schedule slot taken, exactly once: the primary key is what makes a slot
-- run once across restarts and replicas.
CREATE TABLE schedule_slots (
    schedule_id UUID NOT NULL REFERENCES backup_schedules (id) ON DELETE CASCADE,
    slot TIMESTAMPTZ NOT NULL,
    backup_id UUID REFERENCES backups (id) ON DELETE SET NULL,
    -- Earlier slots that passed while no worker ran (reported, not run).
    missed INTEGER NOT NULL DEFAULT 0,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, slot)
);
