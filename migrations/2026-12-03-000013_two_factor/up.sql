-- Two-factor sign-in (engine::twofactor): a TOTP secret per user (sealed),
-- the one being enrolled until its first code confirms it, the last time step
-- used (a code works once), ten one-time recovery codes (hashed), and an
-- organization's requirement that its members use it.
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_pending TEXT;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;
ALTER TABLE organizations ADD COLUMN require_2fa BOOLEAN NOT NULL DEFAULT false;
CREATE TABLE recovery_codes (
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash BYTEA NOT NULL,
    used_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);
