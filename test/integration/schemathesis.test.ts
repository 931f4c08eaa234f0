import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { purchaseIdFor } from '../../api/routes/payments';
import type { Pool } from '../../db/pool';
import { call, makeKey, type TestApi } from '../support/api';
import { ROOT, TEST_DATA } from '../support/paths';
import { startStack, type Harness, type Stack } from '../support/stack';

/**
 * The OpenAPI contract, checked by Schemathesis against the running app: every documented
 * operation is fed generated valid and invalid requests (a bounded number each), and every answer
 * must be a non-5xx, with a documented status, content type and body shape.
 */
const BIN = path.join(ROOT, '.tools', 'venv-schemathesis', 'bin', 'schemathesis');
const CHECKS = 'not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance';
// Bounded and seeded so CI is repeatable; SCHEMATHESIS_SEED / SCHEMATHESIS_MAX_EXAMPLES explore further.
const MAX_EXAMPLES = process.env.SCHEMATHESIS_MAX_EXAMPLES ?? '25';
const SEED = process.env.SCHEMATHESIS_SEED ?? '20260101';
const KILL_AFTER_MS = 90_000;

let stack: Stack;
let pool: Pool;
let t: Harness;
let api: TestApi;
let admin: string;

beforeAll(async () => {
  // Purchases run their real workflow (sandbox gateway) on the same worker as holds.
  stack = await startStack((h) => ({
    holds: () => Promise.resolve(h.holds),
    payments: () => Promise.resolve(h.payments),
    gateway: h.gateway,
  }));
  ({ pool, t, api } = stack);
  admin = await makeKey(pool, 'admin');
  // Data behind the document's examples, so example-driven requests reach real rows, not only 404s.
  const post = (p: string, json: unknown, idem: string = randomUUID()) =>
    call(api.url, 'POST', p, { key: admin, json, headers: { 'idempotency-key': idem } });
  const put = (p: string, json: unknown) => call(api.url, 'PUT', p, { key: admin, json });
  for (const id of ['cust_42', 'cust_7']) {
    expect((await post('/v1/customers', { id, name: id })).status).toBe(201);
    expect((await post(`/v1/customers/${id}/grants`, { amount: '1000000', kind: 'purchased' })).status).toBe(201);
  }
  const card = { rules: [{ meter: 'api_calls', credits: '0.5' }] };
  expect((await call(api.url, 'PUT', '/v1/rate-cards/default', { key: admin, json: card })).status).toBe(201);
  const hold = await post('/v1/holds', { customerId: 'cust_42', holdId: 'job_1', amount: '10', ttlSeconds: 3600 });
  expect(hold.status).toBe(201);
  // cust_42 has a card, a purchase (the document's example purchaseId) and a top-up rule; cust_7 none.
  expect((await put('/v1/customers/cust_42/payment-method', { paymentMethod: 'pm_card_visa' })).status).toBe(200);
  const price = { amountMinor: 500, currency: 'USD' };
  const bought = await post('/v1/customers/cust_42/purchases', { credits: '50', price }, 'seed_purchase');
  expect(bought.status).toBe(201);
  expect(bought.body.purchaseId).toBe(purchaseIdFor('cust_42', 'seed_purchase'));
  const rule = {
    enabled: true,
    threshold: '10',
    mode: 'fixed',
    credits: '100',
    unitPrice: { amountMinor: '1', currency: 'USD' },
  };
  expect((await put('/v1/customers/cust_42/auto-topup', rule)).status).toBe(200);
}, 60_000);

afterAll(() => stack?.close());

function run(bin: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    // Async on purpose: the app under test answers from this very process.
    const child = spawn(bin, args, {
      cwd: TEST_DATA,
      env: { ...process.env, NO_COLOR: '1' },
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      output += `\n[killed after ${KILL_AFTER_MS} ms]`;
      child.kill('SIGKILL');
    }, KILL_AFTER_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

it('the API conforms to its OpenAPI document (Schemathesis)', async () => {
  if (!existsSync(BIN)) {
    throw new Error(`${BIN} is missing: run npm test (scripts/test.sh installs it via ensure_schemathesis)`);
  }
  const { code, output } = await run(BIN, [
    'run',
    `${api.url}/openapi.json`,
    '--header',
    `Authorization: Bearer ${admin}`,
    '--checks',
    CHECKS,
    '--phases',
    'examples,coverage,fuzzing',
    '--max-examples',
    MAX_EXAMPLES,
    // One worker: CPython 3.11's ast.parse is not thread-safe and Hypothesis calls it while generating.
    '--workers',
    '1',
    '--seed',
    SEED,
    '--request-timeout',
    '15',
    '--generation-database',
    'none',
    '--no-color',
    // The live balance stream never ends by design (tested in test/integration/balance-stream.test.ts).
    '--exclude-path-regex',
    'balance/stream$',
  ]);
  if (code !== 0) throw new Error(`schemathesis exited with ${code}:\n${output}`);
  // It really exercised every operation of the document (not, say, an empty or unparsable one).
  const selected = /Selected: (\d+)\/(\d+)/.exec(output);
  expect(Number(selected?.[2])).toBeGreaterThanOrEqual(32);
  expect(Number(selected?.[1])).toBe(Number(selected?.[2]) - 1); // all but the stream
  expect(output).toContain(`Tested: ${selected?.[1]}`);
}, 120_000);

it('every charge the run caused ended in its one purchased lot (none left paid without credits)', async () => {
  // A 202 leaves its workflow running: it must finish, not fail.
  const pending = await pool.query<{ workflow_id: string }>(
    `SELECT workflow_id FROM payments WHERE status = 'pending'`,
  );
  for (const { workflow_id } of pending.rows) await t.client.workflow.getHandle(workflow_id).result();
  const charges = await pool.query<{ charge: string; status: string | null; lot: string | null }>(
    `SELECT c.id AS charge, p.status, l.id AS lot
       FROM sandbox_charges c
       LEFT JOIN payments p ON p.gateway_key = c.idempotency_key
       LEFT JOIN credit_lots l ON l.id = p.lot_id AND l.payment_reference = c.id
        AND l.cost_amount_minor = c.amount_minor AND l.kind = 'purchased'`,
  );
  expect(charges.rows.length).toBeGreaterThanOrEqual(2); // the seeded purchase and the document's example
  expect(charges.rows.filter((c) => c.status !== 'succeeded' || c.lot === null)).toEqual([]);
}, 60_000);
