-- A row written already claimed for the node whose transaction enqueued it (runAfterCommit) is kept alive by
-- that node while it runs: renewed every few seconds. Past alive_until any runner may take it over, so a node
-- that dies between the commit and the run holds its job for seconds, not the whole lease. locked_until keeps
-- its meaning (the latest the attempt may still act: the grants module waits for it). Null: an ordinary claim.
alter table outbox add column alive_until timestamptz;
