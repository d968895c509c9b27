-- Replicated tables: written only by the raft FSM, identical on every member.
-- Appliance-local tables (sessions, login throttling, OIDC logins in flight)
-- are marked "local" and are never part of a raft snapshot.

create table fsm_state (
    id            int primary key default 1 check (id = 1),
    applied_index bigint not null,
    applied_term  bigint not null
);
insert into fsm_state (applied_index, applied_term) values (0, 0);

create table cluster (
    id          int primary key default 1 check (id = 1),
    cluster_id  text not null,
    created_at  timestamptz not null
);

-- The cluster key ring: the cluster CA (certificate and key) and, later,
-- the keys that encrypt secrets. Replicated, so any member can become the
-- primary and sign a new member's certificate.
create table cluster_keys (
    name       text primary key,
    value      jsonb not null,
    created_at timestamptz not null
);

create table settings (
    key        text primary key,
    value      jsonb not null,
    updated_at timestamptz not null,
    updated_by text not null
);

create table members (
    id             text primary key,
    name           text not null,
    address        text not null,
    version        text not null,
    is_voter       boolean not null,
    enrolled_since timestamptz not null
);

create table users (
    id            text primary key,
    username      text not null,
    role          text not null,
    password_hash text not null default '',
    source        text not null default 'local',
    -- for users of the identity provider: "<issuer> <sub>", which never
    -- changes, unlike the user name the provider sends.
    subject       text not null default '',
    disabled      boolean not null default false,
    created_at    timestamptz not null,
    updated_at    timestamptz not null
);
create unique index users_username_lower on users (lower(username));
create unique index users_subject on users (subject) where subject <> '';

create table api_tokens (
    id         text primary key,
    user_id    text not null references users (id),
    token_hash bytea not null unique,
    created_at timestamptz not null,
    expires_at timestamptz not null,
    revoked_at timestamptz
);

create table operations (
    id          text primary key,
    kind        text not null,
    state       text not null,
    owner_id    text not null,
    actor       text not null,
    started_at  timestamptz not null,
    ended_at    timestamptz,
    error       text not null default '',
    steps       jsonb not null,
    raft_index  bigint not null
);
create index operations_started on operations (started_at desc);

create table cluster_lock (
    id           int primary key default 1 check (id = 1),
    operation_id text not null references operations (id),
    kind         text not null,
    owner_id     text not null,
    actor        text not null,
    since        timestamptz not null
);

create table events (
    id           text primary key,
    raft_index   bigint not null,
    type         text not null,
    member_id    text not null,
    actor        text not null,
    at           timestamptz not null,
    operation_id text not null default '',
    details      jsonb not null default '{}'
);
create index events_at on events (at desc, raft_index desc);
create index events_type on events (type, at desc);

-- Browser sessions, replicated: a session started on one member is valid on
-- every member, so a load balancer needs no sticky sessions. The cookie
-- carries a random ID; only its SHA-256 is kept.
create table sessions (
    id_hash      bytea primary key,
    user_id      text not null default '',
    data         bytea not null,
    created_at   timestamptz not null,
    expires_at   timestamptz not null
);
create index sessions_expires on sessions (expires_at);
create index sessions_user on sessions (user_id);

-- local: sessions started while this appliance had no consensus (nothing
-- can be written to the cluster then, but an administrator must still be
-- able to sign in, e.g. to Reset Cluster). Valid on this appliance only.
create table local_sessions (
    id_hash      bytea primary key,
    user_id      text not null default '',
    data         bytea not null,
    created_at   timestamptz not null,
    expires_at   timestamptz not null
);

-- local: when this appliance last saw each session (idle timeout). Kept per
-- member so a page view is never a cluster-wide write.
create table session_activity (
    id_hash      bytea primary key,
    last_seen_at timestamptz not null
);

-- local: failed sign-ins, to slow down guessing.
create table login_failures (
    key          text primary key,
    failures     int not null,
    last_failure timestamptz not null,
    locked_until timestamptz not null
);

-- local: OIDC sign-ins between the redirect to the provider and the callback.
create table oidc_logins (
    state       text primary key,
    nonce       text not null,
    verifier    text not null,
    return_to   text not null,
    created_at  timestamptz not null
);
