-- fourEyes.alone: apply waives four-eyes while nobody else could approve a held change (docs/security.md,
-- finding 76). approver_role_lost_at: when the principal last stopped holding any role that may approve one
-- (admin, security), so an approver demoted in the last 24 hours still counts, as one disabled does. Null: never
-- lost one since this migration (demotions before it are not known; nothing is guessed here).
alter table principals add column approver_role_lost_at timestamptz;
