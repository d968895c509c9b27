-- The access-request workflow. Every table here is replicated: written only
-- by the raft FSM (package workflow), identical on every member, and listed
-- in store.replicatedTables.

-- Assets are the machines whose accounts the cluster guards.
create table assets (
    id         uuid primary key,
    name       text not null,
    address    text not null,
    platform   text not null,
    created_at timestamptz not null,
    updated_at timestamptz not null
);
create unique index assets_name on assets (lower(name));

-- Accounts on assets. The password is sealed with the cluster's data key
-- (package keyring): "v1:<key id>:<base64 nonce+ciphertext>".
create table accounts (
    id                  uuid primary key,
    asset_id            uuid not null references assets (id),
    username            text not null,
    secret              text not null,
    created_at          timestamptz not null,
    password_changed_at timestamptz not null
);
create unique index accounts_asset_username on accounts (asset_id, lower(username));

-- Access policies: who may request which accounts, who approves, for how
-- long, and whether the password changes after check-in. requesters and
-- approvers hold user names, or role names meaning every user of the role.
create table policies (
    id                   uuid primary key,
    name                 text not null,
    requesters           text[] not null,
    approvers            text[] not null,
    approval_required    boolean not null,
    duration_minutes     int not null,
    change_after_checkin boolean not null,
    created_at           timestamptz not null,
    updated_at           timestamptz not null
);
create unique index policies_name on policies (lower(name));

create table policy_accounts (
    policy_id  uuid not null references policies (id) on delete cascade,
    account_id uuid not null references accounts (id) on delete cascade,
    primary key (policy_id, account_id)
);
create index policy_accounts_account on policy_accounts (account_id);

-- Access requests. A request copies its policy's terms when it is made, so
-- a later change of the policy does not change a request under way.
-- States: Pending, Available, Denied, CheckedIn, Expired.
create table access_requests (
    id                   uuid primary key,
    account_id           uuid not null references accounts (id) on delete cascade,
    policy_id            uuid not null,
    requester_id         text not null,
    requester            text not null,
    reason               text not null,
    state                text not null,
    approval_required    boolean not null,
    approvers            text[] not null,
    duration_minutes     int not null,
    change_after_checkin boolean not null,
    requested_at         timestamptz not null,
    decided_by           text not null default '',
    decided_at           timestamptz,
    decision_comment     text not null default '',
    available_at         timestamptz,
    expires_at           timestamptz,
    releases             int not null default 0,
    last_released_at     timestamptz,
    ended_at             timestamptz,
    ended_by             text not null default '',
    password_changed     boolean not null default false
);
-- At most one holder of an account at a time: enforced by the database in
-- the FSM's transaction, the same on every member.
create unique index access_requests_one_holder on access_requests (account_id) where state = 'Available';
create index access_requests_requester on access_requests (requester_id, requested_at desc);
create index access_requests_open on access_requests (account_id) where state in ('Pending', 'Available');
create index access_requests_pending on access_requests (requested_at) where state = 'Pending';
create index access_requests_expiry on access_requests (expires_at) where state = 'Available';
create index access_requests_requested on access_requests (requested_at desc, id);

-- Rows of a CSV import between its batches and its commit. An import is
-- validated as a whole before its first batch is proposed; the commit moves
-- its rows into assets and accounts in one transaction, so an import that
-- stops half-way imports nothing.
create table import_rows (
    import_id  uuid not null,
    line       int not null,
    asset_id   uuid not null,
    new_asset  boolean not null,
    asset_name text not null,
    address    text not null,
    platform   text not null,
    account_id uuid not null,
    username   text not null,
    secret     text not null,
    staged_at  timestamptz not null,
    primary key (import_id, line)
);
