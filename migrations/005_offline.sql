-- Offline Workflow Mode (cluster/offline.go). Every table here is local to
-- this appliance: never replicated, never in a snapshot, kept across
-- restarts.

-- offline_isolation has a row while this appliance is isolated: it says
-- that offline_base_requests holds the access requests as the cluster left
-- them, to be put back before raft runs again.
create table offline_isolation (
    singleton  boolean primary key default true check (singleton),
    since      timestamptz not null
);

-- The access requests as they were when the appliance was isolated. While
-- isolated, the workflow changes this appliance's own copy of
-- access_requests (the cluster cannot commit anything); Resume Online puts
-- this copy back, so raft continues from exactly the state it applied.
create table offline_base_requests (like access_requests);

-- The offline spool: every audit event recorded while isolated, with its
-- original time and member, until Resume Online merges it into the
-- cluster's audit log. merged_at is set once the cluster has it; the
-- event's id makes the merge idempotent (events.id is the key).
create table offline_events (
    seq          bigserial primary key,
    id           text not null unique,
    type         text not null,
    member_id    text not null,
    actor        text not null,
    at           timestamptz not null,
    operation_id text not null default '',
    details      jsonb not null default '{}',
    merged_at    timestamptz
);
