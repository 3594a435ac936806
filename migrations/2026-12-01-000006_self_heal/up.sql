-- What the reconciler did to bring back what should run (a restarted proxy, an
-- app container started again or recreated, a database service restarted),
-- and why: shown in the app's and service's history.
CREATE TABLE repairs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL for Berth's own parts (the managed Traefik).
    organization_id UUID REFERENCES organizations (id) ON DELETE CASCADE,
    application_id UUID REFERENCES applications (id) ON DELETE CASCADE,
    service_id UUID REFERENCES database_services (id) ON DELETE CASCADE,
    -- What was wrong, and what was done about it, in words for a person.
    problem TEXT NOT NULL,
    action TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX repairs_org_idx ON repairs (organization_id);
CREATE INDEX repairs_app_idx ON repairs (application_id, created_at DESC);
CREATE INDEX repairs_service_idx ON repairs (service_id, created_at DESC);
