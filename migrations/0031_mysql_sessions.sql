-- Sessions brokered by the MariaDB/MySQL proxy (issue 18): a third session kind. The check constraint
-- of 0009 has PostgreSQL's generated name (table_column_check).
alter table sessions drop constraint sessions_kind_check;
alter table sessions add constraint sessions_kind_check check (kind in ('ssh', 'postgres', 'mysql'));
