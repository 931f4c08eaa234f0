import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Worker } from '@temporalio/worker';
import pg from 'pg';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { refundWorkflowId } from '../../ledger/refunds';
import { APP_ROLE, provisionServiceRole } from '../../lib/db-roles';
import { call, makeKey, startApi, putTokensRateCard, type TestApi } from '../support/api';
import { freshDatabase, type TestDatabase } from '../support/db';
import { adminUrl, ROOT, TEST_PG_PORT } from '../support/paths';
import { temporalHarness } from '../support/temporal';

/**
 * The service connects as creditflow_app (migration 014): append-only holds even against a bug in
 * our own code. Each refusal is checked by message, not only by code: the append-only trigger
 * raises insufficient_privilege too, so a code check alone would pass with the grant back.
 */
let db: TestDatabase;
let t: Awaited<ReturnType<typeof temporalHarness>>;
let worker: Worker;
let running: Promise<void>;
let api: TestApi;
let admin: string;
let service: string;

/** The append-only tables, each with a column an UPDATE can name. */
const PROTECTED: Record<string, string> = {
  ledger_transactions: 'type',
  ledger_entries: 'account',
  usage_events: 'meter',
  rate_cards: 'rules',
  idempotency_keys: 'result',
  outbox_events: 'type',
  operator_events: 'type',
};

beforeAll(async () => {
  db = await freshDatabase();
  t = await temporalHarness(db.pool);
  worker = await t.startWorker();
  running = worker.run();
  api = await startApi(db.pool, {
    holds: () => Promise.resolve(t.holds),
    payments: () => Promise.resolve(t.payments),
    gateway: t.gateway,
  });
  admin = await makeKey(db.pool, 'admin');
  service = await makeKey(db.pool, 'service');
});
afterAll(async () => {
  await api.close();
  worker.shutdown();
  await running;
  await t.close();
  await db.drop();
});

const post = (p: string, json: unknown, key = admin) =>
  call(api.url, 'POST', p, { key, json, headers: { 'idempotency-key': randomUUID() } });

/** Runs sql in a transaction that is rolled back whatever happens: damage never stays. */
async function attempt(pool: Pool, sql: string[]): Promise<{ code?: string; message: string } | 'ok'> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    for (const s of sql) await c.query(s);
    return 'ok';
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { code: e.code, message: e.message };
  } finally {
    await c.query('ROLLBACK');
    c.release();
  }
}

describe('the service role', () => {
  it('connects as creditflow_app: no superuser, owns nothing', async () => {
    const r = await db.pool.query<{ user: string; super: boolean; owned: string }>(
      `SELECT current_user AS user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS super,
              (SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user))::text AS owned`,
    );
    expect(r.rows[0]).toEqual({ user: APP_ROLE, super: false, owned: '0' });
  });

  it('runs the normal paths: rate card, grant, purchase, usage, hold, refund', async () => {
    await putTokensRateCard(api.url, admin);
    const c = `lp-${randomUUID().slice(0, 8)}`;
    expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id: c } })).status).toBe(201);
    expect((await post(`/v1/customers/${c}/grants`, { amount: '100', kind: 'promotional' })).status).toBe(201);
    await call(api.url, 'PUT', `/v1/customers/${c}/payment-method`, {
      key: admin,
      json: { paymentMethod: 'pm_card_visa' },
    });
    const bought = await post(`/v1/customers/${c}/purchases`, {
      credits: '50',
      price: { amountMinor: 500, currency: 'USD' },
    });
    expect(bought.status).toBe(201);
    const events = await post(
      '/v1/events',
      { events: [{ id: randomUUID(), customerId: c, meter: 'tokens', quantity: '10000' }] },
      service,
    );
    expect(events.status).toBeLessThan(300);
    const hold = await post('/v1/holds', { customerId: c, amount: '30', ttlSeconds: 600 }, service);
    expect(hold.status).toBe(201);
    const settled = await post(`/v1/holds/${hold.body.holdId}/settle`, { customerId: c, amount: '12' }, service);
    expect(settled.body).toMatchObject({ status: 'settled', captured: '12' });
    const refund = await post('/v1/refunds', {
      customerId: c,
      lotId: bought.body.lot.id,
      credits: '10',
      reason: 'test',
    });
    expect(refund.status).toBe(202);
    await t.client.workflow.getHandle(refundWorkflowId(refund.body.refundId)).result();
    const view = await call(api.url, 'GET', `/v1/refunds/${refund.body.refundId}`, { key: admin });
    expect(view.body.status).toBe('succeeded');
    const balance = await call(api.url, 'GET', `/v1/customers/${c}/balance`, { key: admin });
    expect(balance.body.available).toBe('118'); // 100 + 50 − 10 used − 12 settled − 10 refunded
    expect(await findViolations(db.pool)).toEqual([]);
  });

  // As the service role each statement is refused for want of the privilege (not by the trigger);
  // as the owner the very same statements go through once triggers are off (so this test can fail).
  const damage = Object.entries(PROTECTED).flatMap(([table, column]): [string, string, RegExp][] => [
    [`UPDATE ${table}`, `UPDATE ${table} SET ${column} = ${column}`, /^permission denied for table /],
    [`DELETE FROM ${table}`, `DELETE FROM ${table}`, /^permission denied for table /],
    [`TRUNCATE ${table}`, `TRUNCATE ${table} CASCADE`, /^permission denied for table /],
    [`ALTER TABLE ${table} DISABLE TRIGGER`, `ALTER TABLE ${table} DISABLE TRIGGER USER`, /^must be owner of table /],
  ]);

  it.each(damage)('refuses %s (42501); the owner may', async (_name, sql, message) => {
    const refused = await attempt(db.pool, [sql]);
    expect(refused).toMatchObject({ code: '42501', message: expect.stringMatching(message) });
    expect(await attempt(db.owner, ['SET LOCAL session_replication_role = replica', sql])).toBe('ok');
  });

  it('refuses SET session_replication_role = replica (42501); the owner may', async () => {
    const sql = 'SET session_replication_role = replica';
    expect(await attempt(db.pool, [sql])).toMatchObject({
      code: '42501',
      message: expect.stringMatching(/permission denied to set parameter "session_replication_role"/),
    });
    expect(await attempt(db.owner, [sql])).toBe('ok');
  });

  it.each([
    ['CREATE TABLE in the schema', 'CREATE TABLE sneaky (x int)'],
    ['DROP TRIGGER', 'DROP TRIGGER ledger_entries_append_only ON ledger_entries'],
    ['CREATE TRIGGER', 'CREATE TRIGGER t BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION now()'],
    ['SET ROLE to the owner', 'SET ROLE postgres'],
    ['reading the migrations table', 'SELECT * FROM pgmigrations'],
  ])('refuses %s (42501)', async (_name, sql) => {
    expect(await attempt(db.pool, [sql])).toMatchObject({ code: '42501' });
  });

  it('cannot grant itself what it lacks (GRANT without grant option grants nothing)', async () => {
    const sql = [`GRANT UPDATE ON ledger_entries TO ${APP_ROLE}`, 'UPDATE ledger_entries SET account = account'];
    expect(await attempt(db.pool, sql)).toMatchObject({
      code: '42501',
      message: expect.stringMatching(/^permission denied for table /),
    });
  });

  it('holds exactly SELECT, INSERT on the protected tables and never TRUNCATE, REFERENCES or TRIGGER anywhere', async () => {
    const r = await db.owner.query<{ table: string; privileges: string[] }>(
      `SELECT c.relname AS table, array_agg(a.privilege_type ORDER BY a.privilege_type) AS privileges
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.grantee = $1::regrole
        GROUP BY c.relname`,
      [APP_ROLE],
    );
    const privileges = Object.fromEntries(r.rows.map((x) => [x.table, x.privileges]));
    for (const table of Object.keys(PROTECTED))
      expect([table, privileges[table]]).toEqual([table, ['INSERT', 'SELECT']]);
    const all = r.rows.flatMap((x) => x.privileges);
    for (const never of ['TRUNCATE', 'REFERENCES', 'TRIGGER']) expect(all).not.toContain(never);
    // Every table but the migrations bookkeeping is usable: a new table without grants shows here.
    const tables = await db.owner.query<{ relname: string }>(
      `SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND relname <> 'pgmigrations' ORDER BY 1`,
    );
    expect(tables.rows.map((x) => x.relname).filter((x) => !privileges[x])).toEqual([]);
  });

  it("can use a table a later migration (the owner) creates, through the default privileges, but can't truncate it", async () => {
    await db.owner.query('CREATE TABLE later_feature (id int PRIMARY KEY, note text)');
    await db.pool.query(`INSERT INTO later_feature VALUES (1, 'a')`);
    await db.pool.query(`UPDATE later_feature SET note = 'b'`);
    expect((await db.pool.query('SELECT note FROM later_feature')).rows).toEqual([{ note: 'b' }]);
    await db.pool.query('DELETE FROM later_feature');
    expect(await attempt(db.pool, ['TRUNCATE later_feature'])).toMatchObject({ code: '42501' });
    await db.owner.query('DROP TABLE later_feature');
  });
});

describe('setting up the login role (lib/db-roles.ts)', () => {
  const roleUrl = (role: string, password?: string) =>
    `postgres://${role}${password ? `:${encodeURIComponent(password)}` : ''}@127.0.0.1:${TEST_PG_PORT}/${new URL(db.url).pathname.slice(1)}`;

  it('a login role of its own name: created once even by concurrent migrate steps, member of creditflow_app, no more', async () => {
    const role = `cf_svc_${randomUUID().slice(0, 8)}`;
    try {
      const url = roleUrl(role, 'p@ss:w/rd');
      await Promise.all([provisionServiceRole(db.ownerUrl, url), provisionServiceRole(db.ownerUrl, url)]);
      await provisionServiceRole(db.ownerUrl, url); // idempotent
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await c.query(`INSERT INTO audit_events (action, subject) VALUES ('test', 'x')`);
        await expect(c.query('DELETE FROM audit_events')).rejects.toMatchObject({ code: '42501' });
        await expect(c.query('ALTER TABLE ledger_entries DISABLE TRIGGER ALL')).rejects.toMatchObject({
          code: '42501',
        });
      } finally {
        await c.end();
      }
    } finally {
      await db.owner.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('refuses a superuser or the owner as the service role', async () => {
    await expect(provisionServiceRole(db.ownerUrl, roleUrl('postgres'))).rejects.toThrow(
      /superuser or owns the schema/,
    );
  });
});

describe('migration 014 (roles are cluster-wide)', () => {
  it('two databases migrating at the same time both create-or-find the role', async () => {
    const role = `cf_race_${randomUUID().slice(0, 8)}`;
    const sql = readFileSync(path.join(ROOT, 'migrations', '1764000000014_service_role.sql'), 'utf8').replaceAll(
      'creditflow_app',
      role,
    );
    const [d1, d2] = [await freshDatabase(), await freshDatabase()];
    const [a, b] = [new pg.Client({ connectionString: d1.ownerUrl }), new pg.Client({ connectionString: d2.ownerUrl })];
    await Promise.all([a.connect(), b.connect()]);
    try {
      await a.query('BEGIN');
      await a.query(sql); // created, not committed yet
      await b.query('BEGIN');
      const second = b.query(sql); // waits on a's uncommitted role, then finds it exists
      const bPid = (b as unknown as { processID: number }).processID;
      const watcher = new pg.Client({ connectionString: adminUrl() });
      await watcher.connect();
      for (let i = 0; i < 100; i++) {
        const w = await watcher.query(`SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1`, [bPid]);
        if (w.rows[0]?.wait_event_type === 'Lock') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await watcher.end();
      await a.query('COMMIT');
      await second;
      await b.query('COMMIT');
      const n = await a.query(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1`, [role]);
      expect(n.rows[0]).toEqual({ n: 1 });
    } finally {
      await Promise.all([a.end(), b.end()]);
      await Promise.all([d1.drop(), d2.drop()]);
      const x = new pg.Client({ connectionString: adminUrl() });
      await x.connect();
      await x.query(`DROP ROLE IF EXISTS ${role}`);
      await x.end();
    }
  });
});
