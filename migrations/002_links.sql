-- local: the history of this appliance's probes of the other members (link
-- latency), downsampled. One row per directed link (from this appliance to
-- to_id) and time bucket: every 10 seconds (kept 3 hours) and every minute
-- (kept 48 hours); the prober deletes older rows, so the table stays
-- bounded. Never replicated, never in a snapshot.
create table link_samples (
    from_id      text not null,
    to_id        text not null,
    resolution_s int not null check (resolution_s > 0),
    at           timestamptz not null,
    probes       int not null check (probes > 0),
    lost         int not null check (lost >= 0 and lost <= probes),
    min_ms       double precision,
    avg_ms       double precision,
    max_ms       double precision,
    jitter_ms    double precision,
    primary key (from_id, to_id, resolution_s, at)
);
