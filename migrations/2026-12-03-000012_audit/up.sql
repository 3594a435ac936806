-- The audit log (engine::audit): who did what to what, when, from where, and
-- how it ended. Rows of an organization go with it; rows without one are the
-- instance's (sign-ins, settings, organization creation).
CREATE TABLE audit_log (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID REFERENCES organizations (id) ON DELETE CASCADE,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_kind TEXT NOT NULL CHECK (actor_kind IN ('user', 'key', 'webhook', 'worker', 'anonymous')),
    -- The user acting (for a key: its owner); kept when the user goes.
    actor_user UUID REFERENCES users (id) ON DELETE SET NULL,
    actor_key UUID REFERENCES api_keys (id) ON DELETE SET NULL,
    -- Who, in words, as it was then (a name and email, a key's prefix, a webhook).
    actor_label TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    target_kind TEXT,
    target_id UUID,
    result TEXT NOT NULL CHECK (result IN ('ok', 'denied', 'failed')),
    -- The HTTP status the edge answered with, when the action came over HTTP.
    status INTEGER,
    client_ip TEXT
);
CREATE INDEX audit_log_org ON audit_log (organization_id, at DESC);
CREATE INDEX audit_log_instance ON audit_log (at DESC) WHERE organization_id IS NULL;
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor_user ON audit_log (actor_user);
CREATE INDEX audit_log_actor_key ON audit_log (actor_key);
