-- The deploy engine: applications, their environment variables and domains, the
-- deployments that run them, and webhook deliveries (for idempotency).

CREATE TABLE applications (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    environment_id UUID NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    -- A DNS label, unique on the server: it names containers, images and the default domain.
    name TEXT NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    description TEXT NOT NULL DEFAULT '',
    -- Where the image comes from: `image` (a registry reference) or `git` (cloned and built).
    source JSONB NOT NULL,
    -- Registry password or deploy key, sealed with the instance key (AES-256-GCM); NULL when none.
    source_secret TEXT,
    -- How a git source becomes an image (dockerfile or static).
    build JSONB NOT NULL,
    -- Container settings: port, command, resources, volumes, health check, restart policy.
    runtime JSONB NOT NULL,
    -- Signs GitHub webhooks (sealed); the generic deploy token is stored hashed and sealed.
    webhook_secret TEXT NOT NULL,
    deploy_token_hash TEXT NOT NULL UNIQUE,
    deploy_token TEXT NOT NULL,
    -- The deployment currently serving traffic (set when a deployment reaches `running`).
    live_deployment_id UUID,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX applications_env_idx ON applications (environment_id);
CREATE INDEX applications_org_idx ON applications (organization_id);

CREATE TABLE app_env_vars (
    application_id UUID NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]*$'),
    -- Sealed value; only the container and an explicit reveal ever see it.
    value TEXT NOT NULL,
    PRIMARY KEY (application_id, name)
);

CREATE TABLE domains (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    application_id UUID NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    path_prefix TEXT NOT NULL DEFAULT '/',
    strip_prefix BOOLEAN NOT NULL DEFAULT FALSE,
    -- NULL: the application's container port.
    port INTEGER CHECK (port BETWEEN 1 AND 65535),
    https BOOLEAN NOT NULL DEFAULT FALSE,
    -- The generated `<app>.<base domain>` one.
    generated BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (host, path_prefix)
);
CREATE INDEX domains_app_idx ON domains (application_id);

CREATE TABLE deployments (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    application_id UUID NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN
        ('queued', 'cloning', 'building', 'starting', 'health_checking', 'routing', 'running', 'failed', 'cancelled')),
    reason TEXT,
    -- manual | webhook | rollback | api
    trigger TEXT NOT NULL,
    commit_sha TEXT,
    -- The image this deployment runs (`berth/<app>:<deployment id>`), once built or pulled.
    image TEXT,
    -- A rollback redeploys this earlier deployment's image.
    rollback_of UUID REFERENCES deployments (id) ON DELETE SET NULL,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    -- The worker holding it, and its last sign of life (a stale heartbeat means the worker died).
    worker_id TEXT,
    heartbeat_at TIMESTAMPTZ,
    -- Set once the image has been removed by pruning: rollback to it is no longer possible.
    image_pruned BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    cloning_at TIMESTAMPTZ,
    building_at TIMESTAMPTZ,
    starting_at TIMESTAMPTZ,
    health_checking_at TIMESTAMPTZ,
    routing_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);
CREATE INDEX deployments_app_idx ON deployments (application_id, created_at DESC);
CREATE INDEX deployments_queued_idx ON deployments (created_at) WHERE status = 'queued';
-- One deployment per application at a time, enforced by the database itself.
CREATE UNIQUE INDEX deployments_one_active_per_app ON deployments (application_id)
    WHERE status IN ('cloning', 'building', 'starting', 'health_checking', 'routing');

ALTER TABLE applications
    ADD CONSTRAINT applications_live_deployment_fk
    FOREIGN KEY (live_deployment_id) REFERENCES deployments (id) ON DELETE SET NULL;

CREATE TABLE webhook_deliveries (
    application_id UUID NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    delivery_id TEXT NOT NULL,
    deployment_id UUID REFERENCES deployments (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (application_id, delivery_id)
);
