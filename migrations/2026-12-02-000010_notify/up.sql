-- Notifications (engine::notify): where an organization's notices go, and
-- each notice's delivery to each channel as a job with retries.
CREATE TABLE notification_channels (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('slack', 'discord', 'telegram', 'teams', 'google_chat', 'webhook', 'email')),
    -- The URL, tokens, signing secret or SMTP settings as sealed JSON (bound to
    -- this row's ID): pages see only `summary`.
    settings TEXT NOT NULL,
    -- What a page may show: the receiver's host, the chat, the address.
    summary TEXT NOT NULL,
    -- The events this channel is told about (lifecycle::NotifyEvent::CHOOSABLE).
    events TEXT[] NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name)
);

CREATE TABLE notification_deliveries (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    channel_id UUID NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    -- The facts of the notice (names, reason, IDs); formatted when sent.
    facts JSONB NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sending', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    -- A queued delivery is not claimed before this (retries back off).
    next_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    worker_id TEXT,
    heartbeat_at TIMESTAMPTZ,
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
CREATE INDEX notification_deliveries_channel ON notification_deliveries (channel_id, created_at DESC);
CREATE INDEX notification_deliveries_org ON notification_deliveries (organization_id, created_at DESC);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_at) WHERE status = 'queued';
CREATE INDEX notification_deliveries_sending ON notification_deliveries (heartbeat_at) WHERE status = 'sending';

-- The release `berth serve` last ran, so an upgrade is told once.
ALTER TABLE instance ADD COLUMN running_release TEXT;

-- Alert rules (engine::alerts): a metric above a threshold for a while, told
-- to the rule's channels once when it starts and once when it clears.
CREATE TABLE alert_rules (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    metric TEXT NOT NULL CHECK (metric IN ('cpu', 'memory', 'disk', 'restarts', 'oom', 'certificate')),
    -- Percent (CPU: of one core; memory: of the container's limit; disk:
    -- used), a count (restarts, OOM kills), or days (a certificate expiring).
    threshold REAL NOT NULL CHECK (threshold > 0),
    -- Percents: how long it must hold before the alert fires. Counts: the
    -- window they are counted in.
    for_secs INTEGER NOT NULL CHECK (for_secs >= 0),
    -- The channels told (IDs of this organization's channels; removed ones are skipped).
    channels UUID[] NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name)
);

-- One breach of one rule by one subject (an app, a service, the host, or a
-- domain's certificate).
CREATE TABLE alert_incidents (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    rule_id UUID NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('app', 'service', 'host', 'domain')),
    subject UUID NOT NULL,
    subject_name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    -- The figure when it last moved.
    value REAL NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    fired_at TIMESTAMPTZ,
    resolved_at TIMESTAMPTZ
);
-- At most one open incident per rule and subject: two replicas evaluating the
-- same pass cannot both open one.
CREATE UNIQUE INDEX alert_incidents_open ON alert_incidents (rule_id, subject) WHERE state IN ('pending', 'firing');
CREATE INDEX alert_incidents_org ON alert_incidents (organization_id, started_at DESC);
CREATE INDEX alert_incidents_rule ON alert_incidents (rule_id, started_at DESC);

-- Restarts and OOM kills of apps' and databases' containers, as the
-- reconciler's leader sees them, for the alert rules that count them.
CREATE TABLE container_events (
    id BIGSERIAL PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('app', 'service')),
    subject UUID NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('restart', 'oom')),
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX container_events_org ON container_events (organization_id, event, at);
CREATE INDEX container_events_age ON container_events (at);
