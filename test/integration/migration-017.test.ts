import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { adminUrl, ROOT } from '../support/paths';

/**
 * Migration 017 on a database that already has data (fresh databases have nothing to move):
 * idempotency records get their customer from their transaction or their key's parts, and one no
 * migration can place stops it; customer-less outbox events move to operator_events with their
 * ids, their deliveries still find them, and customer events keep theirs.
 */
const MIGRATIONS_DIR = path.join(ROOT, 'migrations'); // not lib/migrate's: node-pg-migrate is ESM, which Jest cannot load
const files = readdirSync(MIGRATIONS_DIR)
  .filter((f) => f.endsWith('.sql'))
  .sort();
const UPGRADE = files.findIndex((f) => f.startsWith('1764000000017_'));
const upPart = (f: string) => readFileSync(path.join(MIGRATIONS_DIR, f), 'utf8').split(/^-- Down Migration/m)[0]!;

const made: string[] = [];
async function databaseBefore017(): Promise<pg.Client> {
  const name = `t_up_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  made.push(name);
  const c = new pg.Client({ connectionString: adminUrl(name) });
  await c.connect();
  for (const f of files.slice(0, UPGRADE)) await c.query(`BEGIN; ${upPart(f)}; COMMIT;`);
  return c;
}
const apply017 = (c: pg.Client) => c.query(`BEGIN; ${upPart(files[UPGRADE]!)}; COMMIT;`);

afterAll(async () => {
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  for (const name of made) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
});

/** Two customers with a lot each, as the ledger would leave them (triggers off for the shortcut). */
async function seed(c: pg.Client) {
  const lot = randomUUID();
  const tx = randomUUID();
  await c.query(`SET session_replication_role = replica`);
  await c.query(`INSERT INTO customers (id, request_hash) VALUES ('acme', 'x'), ('beta:co', 'x')`);
  await c.query(`INSERT INTO wallets (customer_id) VALUES ('acme'), ('beta:co')`);
  await c.query(
    `INSERT INTO credit_lots (id, customer_id, kind, priority, original, remaining, effective_at)
     VALUES ($1, 'beta:co', 'promotional', 0, 5, 0, now())`,
    [lot],
  );
  await c.query(
    `INSERT INTO ledger_transactions (id, customer_id, type, idempotency_key) VALUES ($1, 'acme', 'grant', 'api:grant:acme:k1')`,
    [tx],
  );
  await c.query(
    `INSERT INTO idempotency_keys (key, request_hash, result) VALUES
    ('api:grant:acme:k1', 'h', '{}'),           -- its transaction names acme
    ($1, 'h', '{}'),                            -- no transaction: the lot names beta:co
    ('sweep:beta%3Aco:h1', 'h', '{}')           -- no transaction: the escaped part names beta:co
  `,
    [`expire:${lot}`],
  );
  await c.query(`SET session_replication_role = DEFAULT`);
  return { lot };
}

it('places every idempotency record with its customer, keys them (customer, key), and keeps them append-only', async () => {
  const c = await databaseBefore017();
  try {
    const { lot } = await seed(c);
    await apply017(c);
    const r = await c.query(`SELECT key, customer_id FROM idempotency_keys ORDER BY key`);
    expect(r.rows).toEqual([
      { key: 'api:grant:acme:k1', customer_id: 'acme' },
      { key: `expire:${lot}`, customer_id: 'beta:co' },
      { key: 'sweep:beta%3Aco:h1', customer_id: 'beta:co' },
    ]);
    const pk = await c.query(
      `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = 'idempotency_keys_pkey'`,
    );
    expect(pk.rows[0].def).toBe('PRIMARY KEY (customer_id, key)');
    await expect(c.query(`UPDATE idempotency_keys SET result = '{}'`)).rejects.toThrow(
      /append-only|not allowed|refuse/i,
    );
  } finally {
    await c.end();
  }
});

it('stops, naming the records, when a key names no single customer (never guesses)', async () => {
  const c = await databaseBefore017();
  try {
    await seed(c);
    // Both customers' ids are parts of this key, and it has no transaction.
    await c.query(`SET session_replication_role = replica`);
    await c.query(`INSERT INTO idempotency_keys (key, request_hash, result) VALUES ('odd:acme:beta%3Aco', 'h', '{}'),
                   ('orphan:nobody', 'h', '{}')`);
    await c.query(`SET session_replication_role = DEFAULT`);
    await expect(apply017(c)).rejects.toThrow(/2 idempotency record\(s\) name no single customer \(e\.g\. .*odd:acme/);
    await c.query('ROLLBACK');
    // Nothing changed: the column is not there.
    const col = await c.query(
      `SELECT 1 FROM information_schema.columns WHERE table_name = 'idempotency_keys' AND column_name = 'customer_id'`,
    );
    expect(col.rowCount).toBe(0);
  } finally {
    await c.end();
  }
});

it('moves customer-less events to operator_events with their ids; deliveries and the listing still find every event', async () => {
  const c = await databaseBefore017();
  try {
    await seed(c);
    const ins = await c.query<{ id: string; customer_id: string | null }>(
      `INSERT INTO outbox_events (dedupe_key, type, customer_id, payload) VALUES
         ('balance.low:acme:1', 'balance.low', 'acme', '{}'),
         ('reconciliation.discrepancy:r1', 'reconciliation.discrepancy', NULL, '{"runId": "r1"}')
       RETURNING id::text, customer_id`,
    );
    const [customerEvent, operatorEvent] = ins.rows.map((r) => r.id);
    await c.query(`INSERT INTO webhook_endpoints (id, url, secret) VALUES ('we_1', 'http://127.0.0.1:1/', 's')`);
    await c.query(
      `INSERT INTO webhook_deliveries (endpoint_id, event_id, status) VALUES ('we_1', $1, 'pending'), ('we_1', $2, 'pending')`,
      [customerEvent, operatorEvent],
    );
    await apply017(c);

    expect((await c.query(`SELECT id::text, customer_id FROM outbox_events`)).rows).toEqual([
      { id: customerEvent, customer_id: 'acme' },
    ]);
    expect((await c.query(`SELECT id::text, type FROM operator_events`)).rows).toEqual([
      { id: operatorEvent, type: 'reconciliation.discrepancy' },
    ]);
    const joined = await c.query(
      `SELECT d.event_id::text, e.type FROM webhook_deliveries d JOIN notification_events e ON e.id = d.event_id ORDER BY 1`,
    );
    expect(joined.rows.map((r) => r.type).sort()).toEqual(['balance.low', 'reconciliation.discrepancy']);
    // New events of both kinds draw from one sequence: ids never collide, and keep rising.
    const next = await c.query<{ id: string }>(
      `INSERT INTO operator_events (dedupe_key, type, payload) VALUES ('x', 'reconciliation.discrepancy', '{}') RETURNING id::text`,
    );
    const next2 = await c.query<{ id: string }>(
      `INSERT INTO outbox_events (dedupe_key, type, customer_id, payload) VALUES ('y', 'balance.low', 'acme', '{}') RETURNING id::text`,
    );
    expect(BigInt(next.rows[0]!.id)).toBeGreaterThan(BigInt(operatorEvent!));
    expect(BigInt(next2.rows[0]!.id)).toBeGreaterThan(BigInt(next.rows[0]!.id));
    // A customer event needs its customer now.
    await expect(
      c.query(`INSERT INTO outbox_events (dedupe_key, type, customer_id, payload) VALUES ('z', 't', NULL, '{}')`),
    ).rejects.toThrow(/null value in column "customer_id"/);
  } finally {
    await c.end();
  }
});
