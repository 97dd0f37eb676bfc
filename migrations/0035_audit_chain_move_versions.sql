-- The chaining pass's write bound to the pending rows' versions it read (docs/security.md, finding 28). The
-- background sequencer reads pending rows without a lock, checks their MACs and links them in the process;
-- audit_chain_move then inserts each chained event from the pending table. A database writer who changed a row
-- after the read would have had its text chained under the hash of what was checked. Now the pass hands over
-- each taken row's version (xmin, as text) and the function raises (STA03, nothing written) unless every row it
-- deletes is still that version; the pass then runs again under the head lock, where the changed row is checked
-- as it is now (and rejected: no MAC) before anything is chained. Otherwise as 0034.
drop function audit_chain_move(bigint, text, bigint[], bigint[], bigint[], text[], text[], bigint, text, bigint[],
  text[], integer[], text[], text[], timestamptz[]);

create function audit_chain_move(
  from_seq bigint,
  from_hash text,
  taken bigint[],
  taken_version text[],
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
  unchanged bigint;
begin
  -- The head first: its row lock is what every chaining pass holds before it touches a pending row.
  update audit_head set seq = to_seq, hash = to_hash where id = 1 and seq = from_seq and hash = from_hash;
  if not found then
    raise exception 'audit chain head moved since this pass read it (seq %)', from_seq using errcode = 'STA01';
  end if;
  -- A row changed after the read (or while this waited for a writer's lock) is deleted as it is now: its xmin
  -- is then another one, which the count below sees.
  with t as (
    delete from audit_pending where pos = any(taken) returning *, xmin::text as version
  ), m as (
    insert into audit_events (seq, id, time, actor, actor_id, action, subject, outcome, reason, correlation_id,
      source_ip, user_agent, details, prev_hash, hash)
    select c.seq, t.id, t.time, t.actor, t.actor_id, t.action, t.subject, t.outcome, t.reason, t.correlation_id,
      t.source_ip, t.user_agent, t.details, c.prev_hash, c.hash
    from unnest(chained_pos, chained_seq, chained_prev, chained_hash) as c(pos, seq, prev_hash, hash)
    join t on t.pos = c.pos
    returning 1
  )
  select (select count(*) from m),
    (select count(*) from t join unnest(taken, taken_version) as v(pos, version)
      on v.pos = t.pos and v.version = t.version)
  into moved, unchanged;
  if moved <> coalesce(cardinality(chained_pos), 0) then
    raise exception 'audit chaining moved % of % pending events', moved, coalesce(cardinality(chained_pos), 0)
      using errcode = 'STA02';
  end if;
  if unchanged <> coalesce(cardinality(taken), 0) then
    raise exception 'audit chaining: % of % pending rows are no longer the version this pass read',
      coalesce(cardinality(taken), 0) - unchanged, coalesce(cardinality(taken), 0) using errcode = 'STA03';
  end if;
  insert into audit_checkpoints (seq, hash, every, key_id, signature, signed_at)
  select * from unnest(cp_seq, cp_hash, cp_every, cp_key_id, cp_signature, cp_signed_at)
  on conflict (seq) do nothing;
  return moved;
end
$$;
