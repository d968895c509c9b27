-- fsm_state is one row that every applied batch of raft entries updates,
-- hundreds of times a second under load. Each update leaves a dead version
-- in the row's page until the page is pruned, and every read of the row
-- walks past them; PostgreSQL prunes a page once its free space falls
-- below the room fillfactor keeps. With 10 % fill, it prunes almost at
-- once, so the row stays a few versions long.
alter table fsm_state set (fillfactor = 10);
