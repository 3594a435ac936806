-- HTTPS end to end (docs/decisions/0005): certificate resolvers configured by
-- instance administrators, per-domain proxy options, custom certificates, and
-- what Berth last saw of each domain's certificate.

-- The ACME account the resolvers use. NULL directory: Let's Encrypt production.
ALTER TABLE instance_settings ADD COLUMN acme_directory TEXT;
ALTER TABLE instance_settings ADD COLUMN acme_email TEXT;
-- DNS-01: a provider among Traefik's (lego's) and its credentials, a sealed
-- JSON object of environment names to values, handed to Traefik as files.
ALTER TABLE instance_settings ADD COLUMN dns_provider TEXT;
ALTER TABLE instance_settings ADD COLUMN dns_credentials TEXT;
-- Nameservers (host:port) the DNS-01 propagation check asks, comma-separated.
ALTER TABLE instance_settings ADD COLUMN dns_resolvers TEXT;
-- Skip lego's propagation check (nameservers that answer no SOA queries).
ALTER TABLE instance_settings ADD COLUMN dns_skip_propagation BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE instance_settings ADD COLUMN http3 BOOLEAN NOT NULL DEFAULT false;

-- How an HTTPS domain gets its certificate: http (HTTP-01), tls (TLS-ALPN-01),
-- dns (DNS-01, the only one for wildcards) or custom (uploaded).
ALTER TABLE domains ADD COLUMN cert TEXT NOT NULL DEFAULT 'http'
    CHECK (cert IN ('http', 'tls', 'dns', 'custom'));
-- Redirects, HSTS, basic auth, headers, compression, rate limit (apps::domains::DomainOptions).
ALTER TABLE domains ADD COLUMN options JSONB NOT NULL DEFAULT '{}';
-- The certificate as last seen: pending, issued or failed.
ALTER TABLE domains ADD COLUMN cert_status TEXT NOT NULL DEFAULT 'pending'
    CHECK (cert_status IN ('pending', 'issued', 'failed'));
ALTER TABLE domains ADD COLUMN cert_issuer TEXT;
ALTER TABLE domains ADD COLUMN cert_not_after TIMESTAMPTZ;
ALTER TABLE domains ADD COLUMN cert_error TEXT;
-- Failures in a row, and when the resolver is asked again (backoff).
ALTER TABLE domains ADD COLUMN cert_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE domains ADD COLUMN cert_retry_at TIMESTAMPTZ;
ALTER TABLE domains ADD COLUMN cert_checked_at TIMESTAMPTZ;

-- An uploaded certificate for one domain: the chain as given (public) and the
-- key sealed under the instance key.
CREATE TABLE certificates (
    domain_id UUID PRIMARY KEY REFERENCES domains (id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    chain TEXT NOT NULL,
    key TEXT NOT NULL,
    subject TEXT NOT NULL,
    issuer TEXT NOT NULL,
    not_after TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX certificates_org_idx ON certificates (organization_id);
