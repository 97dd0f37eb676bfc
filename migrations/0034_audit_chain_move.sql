-- A chaining pass's write in one statement (issue 14). The background sequencer reads the head and the
-- pending rows without a transaction or a lock, links them in the process, then calls this once: it moves
-- the head only if it is still the one the pass read (else it raises, STA01, and nothing is written), deletes
-- the pending rows the pass read, inserts the chained ones into audit_events from those rows with their seq,
-- prev_hash and hash, and inserts the checkpoints signed for the events it chains. A chained row missing
-- from audit_pending raises too: the whole statement rolls back. Two round trips a pass (read, this) instead
-- of four (BEGIN, lock and read, move, COMMIT). Inside a transaction that already holds the head lock (the
-- appending transaction in inline mode, a checkpoint catching up) the head check holds by construction.
create function audit_chain_move(
  from_seq bigint,
  from_hash text,
  taken bigint[],
  chained_pos bigint[],
  chained_seq bigint[],
  chained_prev text[],
  chained_hash text[],
  to_seq bigint,
  to_hash text,
  cp_seq bigint[],
  cp_hash text[],
  cp_every integer[],
  cp_key_id text[],
  cp_signature text[],
  cp_signed_at timestamptz[]
) returns bigint language plpgsql as $$
declare
  moved bigint;
begin
  -- The head first: its row lock is what every chaining pass holds before it touches a pending row.
  update audit_head set seq = to_seq, hash = to_hash where id = 1 and seq = from_seq and hash = from_hash;
  if not found then
    raise exception 'audit chain head moved since this pass read it (seq %)', from_seq using errcode = 'STA01';
  end if;
  with t as (
    delete from audit_pending where pos = any(taken) returning *
  ), m as (
    insert into audit_events (seq, id, time, actor, actor_id, action, subject, outcome, reason, correlation_id,
      source_ip, user_agent, details, prev_hash, hash)
    select c.seq, t.id, t.time, t.actor, t.actor_id, t.action, t.subject, t.outcome, t.reason, t.correlation_id,
      t.source_ip, t.user_agent, t.details, c.prev_hash, c.hash
    from unnest(chained_pos, chained_seq, chained_prev, chained_hash) as c(pos, seq, prev_hash, hash)
    join t on t.pos = c.pos
    returning 1
  )
  select count(*) into moved from m;
  if moved <> coalesce(cardinality(chained_pos), 0) then
    raise exception 'audit chaining moved % of % pending events', moved, coalesce(cardinality(chained_pos), 0)
      using errcode = 'STA02';
  end if;
  insert into audit_checkpoints (seq, hash, every, key_id, signature, signed_at)
  select * from unnest(cp_seq, cp_hash, cp_every, cp_key_id, cp_signature, cp_signed_at)
  on conflict (seq) do nothing;
  return moved;
end
$$;
