-- API keys (engine::apikeys): a user's bearer credential for the REST API in
-- one organization, acting with at most the key's role.
CREATE TABLE api_keys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- The key's public part (`berth_<prefix>_...`): found by it, shown in lists.
    prefix TEXT NOT NULL UNIQUE,
    -- SHA-256 of the whole key: a key is 256 random bits, so no slow hash is needed.
    secret_hash BYTEA NOT NULL,
    -- The most the key may do; the owner's role in the organization caps it too.
    role TEXT NOT NULL CHECK (role IN ('viewer', 'member', 'admin', 'owner')),
    -- Instance-level powers, only while the owner is an instance administrator.
    instance BOOLEAN NOT NULL DEFAULT false,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    last_used_ip TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_org ON api_keys (organization_id, created_at DESC);
CREATE INDEX api_keys_user ON api_keys (user_id);
