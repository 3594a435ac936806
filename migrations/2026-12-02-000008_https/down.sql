DROP TABLE certificates;
ALTER TABLE domains DROP COLUMN cert, DROP COLUMN options, DROP COLUMN cert_status,
    DROP COLUMN cert_issuer, DROP COLUMN cert_not_after, DROP COLUMN cert_error,
    DROP COLUMN cert_failures, DROP COLUMN cert_retry_at, DROP COLUMN cert_checked_at;
ALTER TABLE instance_settings DROP COLUMN acme_directory, DROP COLUMN acme_email,
    DROP COLUMN dns_provider, DROP COLUMN dns_credentials, DROP COLUMN dns_resolvers, DROP COLUMN dns_skip_propagation,
    DROP COLUMN http3;
