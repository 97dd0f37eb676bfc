-- Outbox lanes (issue 13, finding 3): a row names what it talks to (`target:<id>`, `channel:<name>`),
-- so the runner caps how many rows of one lane run at once and a slow target cannot take every slot.
-- NULL: no lane (only the runner's overall limit applies).
alter table outbox add column lane text;

-- Rows still to do get the lane their enqueuer would give them now.
update outbox set lane = 'target:' || (payload ->> 'targetId')
  where status in ('pending', 'running') and payload ? 'targetId';
update outbox o set lane = 'target:' || r.target_id
  from grants g join roles r on r.id = g.role_id
  where o.status in ('pending', 'running') and o.lane is null and o.payload ->> 'grantId' = g.id::text;
update outbox o set lane = 'target:' || f.target_id
  from drift_findings f
  where o.status in ('pending', 'running') and o.lane is null and o.payload ->> 'findingId' = f.id::text;
update outbox set lane = 'channel:' || (payload ->> 'channel')
  where status in ('pending', 'running') and lane is null and kind = 'notify.deliver' and payload ? 'channel';
