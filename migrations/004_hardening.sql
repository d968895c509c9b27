-- The audit log is tamper-evident: each event carries its place in the
-- chain (seq, 1, 2, 3 …) and a SHA-256 over its content and the previous
-- event's hash, computed by the FSM as it applies the event, so every
-- member computes the same chain. Events from before this migration have
-- seq 0 and are not part of the chain.
alter table events
    add column seq  bigint not null default 0,
    add column hash text   not null default '';
create unique index events_seq on events (seq) where seq > 0;
