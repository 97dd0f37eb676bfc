-- polled_at: when a device grant was last passed on to the provider's token endpoint. A poll sooner than the
-- grant's interval is answered by Stint (authorization pending, slow down) without asking the provider, so a
-- client polling in a loop cannot make Stint's client hammer the provider (which throttles per client).
alter table sso_handoffs add column polled_at timestamptz;
