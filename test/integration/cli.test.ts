import { randomUUID } from 'node:crypto';
import { runCli, type Io } from '../../cli/commands';
import { reconciliationStarter } from '../../api/routes/reconciliation';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { startStack, type Harness, type Stack } from '../support/stack';

let stack: Stack;
let pool: Pool;
let api: TestApi;
let t: Harness;
let admin: string;
/** What the CLI's main wires: reconciliation started the API's way, workflows awaited. */
let temporalIo: Pick<Io, 'startReconciliation' | 'waitFor'>;

beforeAll(async () => {
  stack = await startStack((h) => ({ reconciliation: reconciliationStarter(h.client, h.taskQueue) }));
  ({ pool, t, api } = stack);
  const start = reconciliationStarter(t.client, t.taskQueue);
  admin = await makeKey(pool, 'admin');
  temporalIo = { startReconciliation: start, waitFor: (id) => t.client.workflow.getHandle(id).result() };
});
afterAll(() => stack?.close());

/** Who and why, required on every write. */
const WHO = ['--operator', 'ops-1', '--reason', 'test'];

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, pool, { out: (l) => out.push(l), err: (l) => err.push(l), ...temporalIo });
  return { code, out, err };
}

describe('keys CLI', () => {
  it('creates a key that authenticates with its role, stores only a hash, and revokes it', async () => {
    const r = await cli('keys', 'create', '--role', 'support', '--name', 'ops', ...WHO);
    expect(r.code).toBe(0);
    const created = JSON.parse(r.out[0]!) as { id: string; key: string; role: string };
    expect(created.role).toBe('support');
    const stored = await pool.query(`SELECT * FROM api_keys WHERE id = $1`, [created.id]);
    expect(JSON.stringify(stored.rows)).not.toContain(created.key);
    expect((await call(api.url, 'POST', '/v1/customers', { key: created.key, json: { id: 'c1' } })).status).toBe(201);
    expect((await cli('keys', 'revoke', '--id', created.id, ...WHO)).code).toBe(0);
    // A fresh API instance has no cache: the revoked key is refused.
    const other = await startApi(pool);
    try {
      expect((await call(other.url, 'GET', '/v1/customers/c1', { key: created.key })).status).toBe(401);
    } finally {
      await other.close();
    }
  });

  it('a viewer key needs a customer and is scoped to it', async () => {
    expect((await cli('keys', 'create', '--role', 'viewer', ...WHO)).code).toBe(2);
    const r = await cli('keys', 'create', '--role', 'viewer', '--customer', 'c1', ...WHO);
    const { key } = JSON.parse(r.out[0]!) as { key: string };
    expect((await call(api.url, 'GET', '/v1/customers/c1', { key })).status).toBe(200);
    expect((await call(api.url, 'GET', '/v1/customers/c2', { key })).status).toBe(403);
  });

  it('refuses unknown roles, flags and commands', async () => {
    expect((await cli('keys', 'create', '--role', 'root', ...WHO)).code).toBe(2);
    expect((await cli('keys', 'create', '--role', 'admin', '--bogus', 'x', ...WHO)).code).toBe(2);
    expect((await cli('nothing')).code).toBe(2);
    expect((await pool.query(`SELECT count(*)::int n FROM api_keys WHERE id LIKE 'key\\_%'`)).rows[0].n).toBe(2);
  });
});

describe('rate-cards CLI', () => {
  it('loads the shipped example card (YAML) as a new immutable version', async () => {
    const load = ['rate-cards', 'load', '--name', 'default', '--file', 'examples/rate-cards/default.yaml', ...WHO];
    const a = await cli(...load);
    expect(a.err).toEqual([]);
    expect(a.code).toBe(0);
    const b = await cli(...load);
    expect(JSON.parse(a.out[0]!)).toMatchObject({ version: 1, rules: 12 });
    expect(JSON.parse(b.out[0]!)).toMatchObject({ version: 2 });
  });

  it('refuses an invalid card file and writes nothing', async () => {
    const before = (await pool.query(`SELECT count(*)::int n FROM rate_cards`)).rows[0].n;
    const r = await cli('rate-cards', 'load', '--name', 'bad', '--file', 'package.json', ...WHO);
    expect(r.code).toBe(2);
    expect((await cli('rate-cards', 'load', '--name', 'x', '--file', '/no/such/file', ...WHO)).code).toBe(2);
    expect((await pool.query(`SELECT count(*)::int n FROM rate_cards`)).rows[0].n).toBe(before);
  });
});

const json = (r: { out: string[] }) => JSON.parse(r.out.join('\n')) as Record<string, unknown>;
const count = async (table: string) => (await pool.query(`SELECT count(*)::int n FROM ${table}`)).rows[0].n as number;

async function newCustomer() {
  const id = `cli-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  return id;
}
const get = async (path: string) => {
  const r = await call(api.url, 'GET', path, { key: admin });
  expect(r.status).toBe(200);
  return r.body as unknown;
};

describe('customers and grants CLI', () => {
  it('grants create|void record who and why in the ledger; customers show|balance|ledger answer as the API does', async () => {
    const c = await newCustomer();
    const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const grantArgs = [
      ...`grants create --customer ${c} --amount 100.5 --kind promotional --expires-at ${expiresAt}`.split(' '),
      ...['--operator', 'alice', '--reason', 'welcome credit'],
    ];
    const g = await cli(...grantArgs);
    expect(g.err).toEqual([]);
    expect(g.code).toBe(0);
    const granted = json(g) as { transactionId: string; key: string; lot: { id: string; remaining: string } };
    expect(granted.lot.remaining).toBe('100.5');

    const v = await cli(
      ...`grants void --customer ${c} --lot ${granted.lot.id}`.split(' '),
      '--operator',
      'bob',
      '--reason',
      'sent by mistake',
    );
    expect(v.code).toBe(0);
    const voided = json(v) as { transactionId: string; key: string };
    const audit = await pool.query(
      `SELECT type, requested_by, reason FROM ledger_transactions WHERE customer_id = $1 ORDER BY seq`,
      [c],
    );
    expect(audit.rows).toEqual([
      { type: 'grant', requested_by: 'cli:alice', reason: 'welcome credit' },
      { type: 'void', requested_by: 'cli:bob', reason: 'sent by mistake' },
    ]);
    // The same --key is the same movement: the first result, nothing written twice.
    const transactions = await count('ledger_transactions');
    const again = await cli(...grantArgs, '--key', granted.key);
    expect(json(again)).toMatchObject({ transactionId: granted.transactionId });
    const conflict = await cli(
      'grants',
      'create',
      '--customer',
      c,
      '--amount',
      '7',
      '--kind',
      'promotional',
      '--key',
      granted.key,
      ...WHO,
    );
    expect([conflict.code, conflict.err.join()]).toEqual([1, expect.stringMatching(/^IdempotencyConflict/)]);
    expect(await count('ledger_transactions')).toBe(transactions);
    expect(voided.transactionId).not.toBe(granted.transactionId);

    expect(
      (await cli('grants', 'create', '--customer', c, '--amount', '20', '--kind', 'promotional', ...WHO)).code,
    ).toBe(0);
    // Reads: the very bodies the API answers (one function behind both).
    expect(json(await cli('customers', 'show', '--customer', c))).toEqual(await get(`/v1/customers/${c}`));
    expect(json(await cli('customers', 'balance', '--customer', c))).toEqual(await get(`/v1/customers/${c}/balance`));
    const ledger = json(await cli('customers', 'ledger', '--customer', c, '--limit', '2'));
    expect(ledger).toEqual(await get(`/v1/customers/${c}/ledger?limit=2`));
    expect((ledger.transactions as unknown[]).length).toBe(2);
    const older = json(await cli('customers', 'ledger', '--customer', c, '--cursor', ledger.nextCursor as string));
    expect(older).toMatchObject({
      transactions: [{ type: 'grant', requestedBy: { keyId: 'cli:alice', name: null }, reason: 'welcome credit' }],
      nextCursor: null,
    });
    expect(json(await cli('customers', 'balance', '--customer', c))).toMatchObject({ available: '20' });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('--format table prints aligned rows for people; JSON (the default) for machines', async () => {
    const c = await newCustomer();
    expect(
      (await cli('grants', 'create', '--customer', c, '--amount', '5', '--kind', 'promotional', ...WHO)).code,
    ).toBe(0);
    const asJson = await cli('customers', 'balance', '--customer', c);
    expect(asJson.out).toHaveLength(1);
    expect(json(asJson)).toMatchObject({ customerId: c, available: '5' });

    const asTable = await cli('customers', 'balance', '--customer', c, '--format', 'table');
    expect(asTable.code).toBe(0);
    expect(() => JSON.parse(asTable.out.join('\n'))).toThrow();
    const [header, rule, ...rows] = asTable.out;
    expect(header).toMatch(/^field\s+value$/);
    expect(rule).toMatch(/^-+ {2}-+$/);
    expect(rows).toEqual(expect.arrayContaining([`customerId  ${c}`, 'available   5', 'nextExpiry']));
    // The wallet's lots as their own table: a column per field, one row per lot.
    const lots = asTable.out.indexOf('lots:');
    expect(asTable.out[lots + 1]).toMatch(/^id\s+customerId\s+kind\s+/);
    expect(asTable.out[lots + 3]).toMatch(new RegExp(`^[0-9a-f-]{36}  ${c}\\s+promotional\\s+`));
    expect(asTable.out.length).toBe(lots + 4);

    const ledger = await cli('customers', 'ledger', '--customer', c, '--format', 'table');
    expect(ledger.out).toContain('transactions:');
    expect(ledger.out.join('\n')).toMatch(/\{"keyId":"cli:ops-1","name":null\}\s+test\s/);
    expect((await cli('customers', 'show', '--customer', c, '--format', 'xml')).code).toBe(2);
  });

  it('refuses hostile arguments with exit 2 and a message naming the flag; writes nothing', async () => {
    const c = await newCustomer();
    const lot = randomUUID();
    const before = await count('ledger_transactions');
    /** A grant's arguments, well-formed but for the flags given (undefined: left out). */
    const grant = (o: Record<string, string | undefined> = {}) => [
      'grants',
      'create',
      ...Object.entries({
        customer: c,
        amount: '5',
        kind: 'promotional',
        operator: 'ops-1',
        reason: 'test',
        ...o,
      }).flatMap(([k, v]) => (v === undefined ? [] : [`--${k}`, v])),
    ];
    const refused: [string[], RegExp][] = [
      [grant({ operator: undefined }), /--operator: is required/],
      [grant({ reason: undefined }), /--reason: is required/],
      [['grants', 'void', '--customer', c, '--lot', lot], /--operator: is required[\s\S]*--reason: is required/],
      [['reconcile', 'run'], /--operator: is required/],
      [['keys', 'create', '--role', 'admin'], /--operator: is required/],
      [grant({ operator: 'a:b' }), /--operator: an operator name/],
      [grant({ reason: 'x'.repeat(501) }), /--reason/],
      [grant({ reason: 'nul\u0000' }), /--reason: must not contain the NUL/],
      [grant({ customer: `${c}\u0000` }), /--customer: must not contain the NUL/],
      [grant({ customer: 'bad id!' }), /--customer: 1–128 characters/],
      [grant({ amount: '99999999999999999999999' }), /--amount/],
      [grant({ amount: '9223372036854.775808' }), /--amount/],
      [grant({ amount: '1.0000001' }), /--amount/],
      [grant({ amount: '-5' }), /--amount/],
      [grant({ amount: '0' }), /--amount: must be greater than 0/],
      [grant({ kind: 'free-money' }), /--kind/],
      [grant({ priority: '1e3' }), /--priority/],
      [grant({ 'expires-at': 'tomorrow' }), /--expires-at/],
      [grant({ key: 'a b' }), /--key/],
      [['grants', 'void', '--customer', c, '--lot', 'not-a-lot', ...WHO], /--lot: must be a lot id/],
      [['customers', 'show', '--customer', '../etc'], /--customer/],
      [['customers', 'show'], /--customer/],
      [['customers', 'ledger', '--customer', c, '--limit', '0'], /--limit/],
      [['customers', 'ledger', '--customer', c, '--limit', '99999999999999999999'], /--limit/],
      [['customers', 'ledger', '--customer', c, '--cursor', 'bogus'], /cursor/],
      [['customers', 'show', '--customer', c, '--bogus', 'x'], /Unknown option '--bogus'/],
      [['refunds', 'show', '--id', 'ref\u0000'], /--id: must not contain the NUL/],
    ];
    for (const [argv, message] of refused) {
      const r = await cli(...argv);
      expect([argv, r.code, r.out]).toEqual([argv, 2, []]);
      expect([argv, r.err.join('\n')]).toEqual([argv, expect.stringMatching(message)]);
    }
    // Well-formed but refused by the domain: exit 1 with the error's code.
    const missing = await cli('grants', 'void', '--customer', c, '--lot', lot, ...WHO);
    expect([missing.code, missing.err.join()]).toEqual([1, expect.stringMatching(/^LotNotFound/)]);
    const nobody = await cli('customers', 'balance', '--customer', 'nobody-here');
    expect([nobody.code, nobody.err.join()]).toEqual([1, expect.stringMatching(/^CustomerNotFound/)]);
    expect(await count('ledger_transactions')).toBe(before);
  });
});

describe('reconcile CLI', () => {
  it("reconcile run starts the API's workflow, records who and why, --wait prints the report; latest reads it", async () => {
    expect((await cli('reconcile', 'latest')).code).toBe(1); // none yet
    const r = await cli('reconcile', 'run', '--wait', '--operator', 'carol', '--reason', 'after the migration');
    expect(r.err).toEqual([]);
    expect(r.code).toBe(0);
    const report = json(r) as { id: string; status: string; workflowId: string; checked: { wallets: number } };
    expect(report).toMatchObject({ status: 'clean', discrepancies: [] });
    expect(report.workflowId).toBe(`reconcile:${new Date().toISOString().slice(0, 10)}:${report.id}`);
    expect(report.checked.wallets).toBeGreaterThan(0);
    expect(json(await cli('reconcile', 'latest'))).toEqual(report);
    expect(json(await cli('reconcile', 'latest'))).toEqual(await get('/v1/reconciliation/latest'));

    // Without --wait: the run's ids at once.
    const started = json(await cli('reconcile', 'run', '--operator', 'carol', '--reason', 'again'));
    expect(started).toEqual({ runId: expect.any(String), workflowId: expect.stringMatching(/^reconcile:/) });
    await t.client.workflow.getHandle(started.workflowId as string).result();
    // The API's POST records its caller the same way.
    expect((await call(api.url, 'POST', '/v1/reconciliation/runs', { key: admin, json: {} })).status).toBe(202);
    const events = await pool.query(
      `SELECT subject, requested_by, detail->>'reason' AS reason FROM audit_events
        WHERE action = 'reconciliation.requested' ORDER BY id`,
    );
    expect(events.rows).toEqual([
      { subject: `reconciliation_run:${report.id}`, requested_by: 'cli:carol', reason: 'after the migration' },
      { subject: `reconciliation_run:${started.runId as string}`, requested_by: 'cli:carol', reason: 'again' },
      { subject: expect.stringMatching(/^reconciliation_run:/), requested_by: admin, reason: null },
    ]);

    const table = await cli('reconcile', 'latest', '--format', 'table');
    expect(table.out).toEqual(expect.arrayContaining([expect.stringMatching(/^status\s+clean$/)]));
    // No Temporal configured: refused before anything is written.
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
    expect(await runCli(['reconcile', 'run', ...WHO], pool, io)).toBe(2);
    expect(err.join()).toMatch(/needs Temporal/);
  }, 60_000);
});
