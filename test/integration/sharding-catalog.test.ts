import type { Pool } from '../../db/pool';
import { freshDatabase } from '../support/db';

/**
 * The ledger must stay ready to be distributed by customer (Citus): every customer-owned row keyed
 * by customer_id — primary keys, unique indexes and foreign keys between customer-owned tables
 * include it — so one customer's transaction runs on one node; tables without a customer are
 * reference tables, which a distributed table may reference but never the other way round.
 *
 * This reads the migrated catalog (migrations 1764000000016 and 017 keyed the customer-owned tables). The
 * departures left are listed below with what must change; the test fails on any other (a new table, index or key that breaks the rule, or a
 * table nobody classified), and on a listed one that no longer exists (so the list only shrinks).
 */

/** Tables without a NOT NULL customer_id, each with its place in a sharded deployment. */
const NOT_CUSTOMER_OWNED: Record<string, string> = {
  customers: 'distributed by its id (the customer id itself)',
  rate_cards: 'reference: shared price lists, read in every customer transaction',
  api_keys: 'reference: a key may be scoped to a customer (nullable customer_id) or to none',
  audit_events: 'an append-only log, customer optional: distributed by its own id',
  http_idempotency: 'per-request leases keyed by scope: distributed by scope',
  reconciliation_runs: 'reference: one row per run',
  webhook_endpoints: 'reference: a few rows per deployment',
  operator_events: 'notifications about no one customer (reconciliation runs): a few a day, on the coordinator',
  webhook_deliveries: 'per endpoint and event (a customer or an operator event): distributed by endpoint',
  webhook_attempts: 'per endpoint',
  sandbox_attempts: 'the development gateway’s own store, never in production',
  sandbox_refunds: 'the development gateway’s own store, never in production',
  pgmigrations: 'the migration runner’s bookkeeping, on the coordinator',
};

/** Known departures, as the check names them: what a sharding migration must still change. */
const KNOWN: Record<string, string> = {
  'sandbox_charges: primary key (id)': 'development gateway only',
  'sandbox_charges: unique (idempotency_key)': 'development gateway only',
  'sandbox_refunds: foreign key (charge_id) → sandbox_charges': 'development gateway only',
};

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
beforeAll(async () => {
  db = await freshDatabase();
  pool = db.owner; // the schema owner: the second test creates tables
});
afterAll(() => db.drop());

interface Catalog {
  tables: Map<string, { customerKey: string | null }>;
  uniques: { table: string; primary: boolean; columns: string[] }[];
  fkeys: { table: string; columns: string[]; target: string; targetColumns: string[] }[];
}

async function catalog(): Promise<Catalog> {
  // Each table, and whether its customer_id is nullable (null: it has no customer_id).
  const cols = await pool.query<{ table: string; nullable: boolean | null }>(
    `SELECT c.relname AS table, NOT a.attnotnull AS nullable
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'customer_id' AND NOT a.attisdropped
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')`,
  );
  const tables = new Map<string, { customerKey: string | null }>();
  for (const r of cols.rows)
    tables.set(r.table, { customerKey: r.table === 'customers' ? 'id' : r.nullable === false ? 'customer_id' : null });
  const uniques = await pool.query<{ table: string; primary: boolean; columns: string[] }>(
    `SELECT c.relname AS table, x.indisprimary AS primary,
            array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, i)
                    JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.i)::text[] AS columns
       FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND x.indisunique`,
  );
  const fkeys = await pool.query<{ table: string; columns: string[]; target: string; targetColumns: string[] }>(
    `SELECT c.conrelid::regclass::text AS table, c.confrelid::regclass::text AS target,
            array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(attnum, i)
                    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.i)::text[] AS columns,
            array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(attnum, i)
                    JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.i)::text[] AS "targetColumns"
       FROM pg_constraint c WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace`,
  );
  return { tables, uniques: uniques.rows, fkeys: fkeys.rows };
}

/** Every departure from the rule, named as in KNOWN. */
function departures(c: Catalog): string[] {
  const out: string[] = [];
  const keyOf = (t: string) => c.tables.get(t)?.customerKey ?? null;
  for (const [table, t] of c.tables) {
    if (t.customerKey === null && !(table in NOT_CUSTOMER_OWNED))
      out.push(`${table}: unclassified (give it a NOT NULL customer_id, or say in NOT_CUSTOMER_OWNED why it has none)`);
    if (t.customerKey !== null && !c.uniques.some((u) => u.table === table && u.primary))
      out.push(`${table}: no primary key`);
  }
  for (const u of c.uniques) {
    const key = keyOf(u.table);
    if (key !== null && !u.columns.includes(key))
      out.push(`${u.table}: ${u.primary ? 'primary key' : 'unique'} (${u.columns.join(', ')})`);
  }
  for (const f of c.fkeys) {
    const from = keyOf(f.table);
    const to = keyOf(f.target);
    if (to === null) continue; // pointing at a reference table is fine
    const name = `${f.table}: foreign key (${f.columns.join(', ')}) → ${f.target}`;
    if (from === null) out.push(name);
    else if (f.columns.indexOf(from) < 0 || f.targetColumns[f.columns.indexOf(from)] !== to) out.push(name);
  }
  return out.sort();
}

test('customer-owned tables are keyed by customer_id: no departure beyond the known ones, and none of those fixed but still listed', async () => {
  const found = departures(await catalog());
  expect(found.filter((d) => !(d in KNOWN))).toEqual([]);
  expect(Object.keys(KNOWN).filter((k) => !found.includes(k))).toEqual([]);
});

test('the check finds what it must: a new customer table keyed by id alone, a unique index without the customer, a cross-customer reference, an unclassified table', async () => {
  await pool.query(`CREATE TABLE t_bad_lines (id uuid PRIMARY KEY, customer_id text NOT NULL REFERENCES customers (id),
    lot_id uuid, code text, CONSTRAINT t_bad_lines_code UNIQUE (code))`);
  await pool.query(`CREATE TABLE t_bad_notes (customer_id text NOT NULL, id text, hold_id text,
    PRIMARY KEY (customer_id, id), FOREIGN KEY (customer_id, hold_id) REFERENCES holds (customer_id, id),
    FOREIGN KEY (hold_id, customer_id) REFERENCES holds (customer_id, id))`);
  await pool.query(`CREATE TABLE t_loose (name text PRIMARY KEY)`);
  const extra = departures(await catalog()).filter((d) => !(d in KNOWN));
  expect(extra).toEqual([
    't_bad_lines: primary key (id)',
    't_bad_lines: unique (code)',
    't_bad_notes: foreign key (hold_id, customer_id) → holds',
    't_loose: unclassified (give it a NOT NULL customer_id, or say in NOT_CUSTOMER_OWNED why it has none)',
  ]);
});
