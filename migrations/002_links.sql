-- Placeholder: the link-latency migration 002 comes from another branch.
-- This file only lets 003 run before that branch is merged; drop it at merge
-- (tern needs a statement in every migration, hence the no-op).
select 1;
