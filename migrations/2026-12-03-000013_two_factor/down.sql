DROP TABLE recovery_codes;
ALTER TABLE organizations DROP COLUMN require_2fa;
ALTER TABLE users DROP COLUMN totp_last_step;
ALTER TABLE users DROP COLUMN totp_pending;
ALTER TABLE users DROP COLUMN totp_secret;
