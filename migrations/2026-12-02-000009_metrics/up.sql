-- Resource use over time (engine::metrics): one row per subject per point.
-- A subject is an application or a database service (by ID, so its series
-- spans its deployments), the managed Traefik, Berth's own container, or the
-- host. Points at the sampling interval are rolled up into minutes and hours.
CREATE TABLE metric_points (
    kind text NOT NULL CHECK (kind IN ('app', 'service', 'proxy', 'berth', 'host')),
    -- The application's or service's ID; the nil UUID for the others.
    subject uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    -- Seconds one point covers: the sampling interval, 60 or 3600.
    resolution integer NOT NULL CHECK (resolution > 0),
    at timestamptz NOT NULL,
    -- Percent of one core (an app's containers added up; the host: of all cores).
    cpu_percent real NOT NULL,
    memory_bytes bigint NOT NULL,
    memory_limit bigint NOT NULL,
    -- Bytes during the point's interval.
    rx_bytes bigint NOT NULL DEFAULT 0,
    tx_bytes bigint NOT NULL DEFAULT 0,
    read_bytes bigint NOT NULL DEFAULT 0,
    write_bytes bigint NOT NULL DEFAULT 0,
    -- The host only: load average, and the disk of Berth's data directory.
    load1 real,
    disk_used bigint,
    disk_total bigint,
    -- Raw points in a rolled-up one.
    samples integer NOT NULL DEFAULT 1,
    PRIMARY KEY (kind, subject, resolution, at)
);
CREATE INDEX metric_points_age ON metric_points (resolution, at);
