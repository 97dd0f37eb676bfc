/**
 * Test support: putting a used test database back as the migrated template left it, so that it can be handed out
 * again (pglite-pool.ts, pg-pool.ts) instead of cloned anew. A database is reset only if its schema is the
 * template's (its fingerprint below: tables, columns and defaults, constraints, indexes, triggers and whether they
 * are enabled, functions, policies, rules, types, schemas, extensions, settings and, on PGlite, roles): a test that
 * changed any of it (a failure-injecting trigger, a dropped constraint) gets its database thrown away. Then every
 * table gets what the template holds (emptied, the template's rows put back) and every sequence stands where the
 * template's stood.
 */

/** Runs one statement (with parameters) and gives its rows: a PGlite instance's or a pg client's `query`. */
export type Query = <R>(text: string, parameters?: unknown[]) => Promise<{ rows: R[] }>;

/** What the template holds, read once per process from a database nobody wrote to yet. */
export interface Pristine {
  schema: string;
  tables: string[];
  rows: { table: string; json: string }[];
  sequences: { name: string; lastValue: string | null; start: string }[];
  /** The session's own settings (PGlite sets some over its command line's: search_path = public). */
  settings: { name: string; setting: string }[];
}

const USER_NAMESPACES = `n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
  and n.nspname not like 'pg\\_temp\\_%' and n.nspname not like 'pg\\_toast\\_temp\\_%'`;

/**
 * One text that changes when anything a test could add, drop or alter in the schema does. On a PostgreSQL server
 * the roles are the cluster's, not the database's: other tests create them all the time, so they are left out.
 */
// Every aggregate orders by its own expressions: `order by 1` inside string_agg sorts by the constant 1, leaving
// the catalogs' physical order, which a TRUNCATE changes.
function schemaFingerprintSql(withRoles: boolean): string {
  return `select md5(concat_ws(' | ',
  (select string_agg(format('%s.%s %s %s %s %s', n.nspname, c.relname, c.relkind, c.relrowsecurity,
     c.relforcerowsecurity, c.reloptions), ',' order by n.nspname, c.relname)
     from pg_class c join pg_namespace n on n.oid = c.relnamespace where ${USER_NAMESPACES}),
  (select string_agg(format('%s.%s %s %s %s', c.relname, a.attname, a.atttypid, a.attnotnull,
     pg_get_expr(d.adbin, d.adrelid)), ',' order by c.relname, a.attnum)
     from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
     left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
     where ${USER_NAMESPACES} and a.attnum > 0 and not a.attisdropped),
  (select string_agg(format('%s %s %s %s', t.tgrelid::regclass, t.tgname, t.tgenabled, t.tgfoid::regproc), ','
     order by t.tgrelid::regclass::text, t.tgname) from pg_trigger t),
  (select string_agg(format('%s %s %s', c.conrelid::regclass, c.conname, pg_get_constraintdef(c.oid)), ','
     order by c.conrelid::regclass::text, c.conname)
     from pg_constraint c join pg_namespace n on n.oid = c.connamespace where ${USER_NAMESPACES}),
  (select string_agg(format('%s %s %s', p.oid::regprocedure, md5(p.prosrc), p.provolatile), ','
     order by p.oid::regprocedure::text)
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace where ${USER_NAMESPACES}),
  (select string_agg(format('%s %s %s', polrelid::regclass, polname, pg_get_expr(polqual, polrelid)), ','
     order by polrelid::regclass::text, polname)
     from pg_policy),
  (select string_agg(format('%s %s', ev_class::regclass, rulename), ',' order by ev_class::regclass::text, rulename)
     from pg_rewrite r
     join pg_class c on c.oid = r.ev_class join pg_namespace n on n.oid = c.relnamespace where ${USER_NAMESPACES}),
  (select string_agg(t.typname, ',' order by t.typname) from pg_type t join pg_namespace n on n.oid = t.typnamespace
     where ${USER_NAMESPACES}),
  (select string_agg(nspname, ',' order by nspname) from pg_namespace n where ${USER_NAMESPACES}),
  ${withRoles ? "(select string_agg(format('%s %s %s', rolname, rolsuper, rolconfig), ',' order by rolname) from pg_roles)," : ""}
  (select string_agg(extname || extversion, ',' order by extname) from pg_extension),
  (select string_agg(evtname, ',' order by evtname) from pg_event_trigger),
  (select string_agg(setconfig::text, ',' order by setconfig::text) from pg_db_role_setting
     where setdatabase in (0, (select oid from pg_database where datname = current_database()))),
  (select string_agg(format('%s %s', indexrelid::regclass, pg_get_indexdef(indexrelid)), ','
     order by indexrelid::regclass::text)
     from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
     where ${USER_NAMESPACES})
)) as fingerprint`;
}

export async function schemaFingerprint(query: Query, withRoles: boolean): Promise<string> {
  const { rows } = await query<{ fingerprint: string }>(schemaFingerprintSql(withRoles));
  return rows[0]?.fingerprint ?? "";
}

/** Reads what an unwritten database holds: its schema's fingerprint, tables, their rows, sequences, settings. */
export async function readPristine(query: Query, withRoles: boolean): Promise<Pristine> {
  const schema = await schemaFingerprint(query, withRoles);
  const tables = (
    await query<{ name: string }>(
      `select format('%I.%I', n.nspname, c.relname) as name from pg_class c
         join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and ${USER_NAMESPACES} order by 1`,
    )
  ).rows.map((r) => r.name);
  const rows: Pristine["rows"] = [];
  for (const table of tables) {
    const { rows: found } = await query<{ json: string | null }>(`select json_agg(t)::text as json from ${table} t`);
    const json = found[0]?.json;
    if (json) rows.push({ table, json });
  }
  const sequences = (
    await query<{ name: string; last_value: string | null; start: string }>(
      `select format('%I.%I', schemaname, sequencename) as name, last_value::text, start_value::text as start
         from pg_sequences`,
    )
  ).rows.map((s) => ({ name: s.name, lastValue: s.last_value, start: s.start }));
  const settings = (
    await query<{ name: string; setting: string }>(
      "select name, setting from pg_settings where source = 'session' order by name",
    )
  ).rows;
  return { schema, tables, rows, sequences, settings };
}

/** A literal that holds `text` whatever it contains (a dollar quote whose tag is not in it). */
function dollarQuoted(text: string): string {
  let tag = "pristine";
  while (text.includes(`$${tag}$`)) tag += "_";
  return `$${tag}$${text}$${tag}$`;
}

/**
 * One script that gives every table and sequence the template's contents back. `truncate` suits PGlite (files in
 * memory); on a PostgreSQL server TRUNCATE makes and syncs new files for every table (~2 s for all of them here),
 * so there the rows are deleted, with triggers (foreign keys, the audit log's append-only guard) off meanwhile.
 */
export function restoreScript(template: Pristine, emptying: "truncate" | "delete"): string {
  const statements = [
    ...(emptying === "truncate"
      ? [`truncate ${template.tables.join(", ")} restart identity cascade`]
      : ["set local session_replication_role = replica", ...template.tables.map((table) => `delete from ${table}`)]),
    ...template.rows.map(
      ({ table, json }) =>
        `insert into ${table} overriding system value select * from json_populate_recordset(null::${table}, ${dollarQuoted(json)})`,
    ),
    ...template.sequences.map((s) =>
      s.lastValue === null
        ? `select setval('${s.name}', ${s.start}, false)`
        : `select setval('${s.name}', ${s.lastValue})`,
    ),
  ];
  return `begin; ${statements.join(";\n")}; commit;`;
}
