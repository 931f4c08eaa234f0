import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { findViolations } from '../../db/invariants';
import { createPool, type Pool } from '../../db/pool';
import { DEV_ADMIN_KEY } from '../../lib/config';
import { ROOT, TEST_DATA } from '../support/paths';
import { freePort } from '../support/ports';

/**
 * The real API process (dist/api/main.js) under ingest load while Postgres is stopped with
 * `pg_ctl stop -m immediate` (connections die mid-transaction, like a crash): the process must
 * stay up, answer 503 + Retry-After quickly while Postgres is down, recover after it restarts,
 * and every event it acknowledged must be stored.
 */
const CLIENTS = 8;
const DOWN_MS = 10_000;
const LATENCY_BOUND_MS = 6_000;

let dir: string;
let url: string;
let api: ChildProcess;
let apiUrl: string;
let apiExit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
let apiOutput = '';
let pool: Pool | undefined;

const pgctl = (...args: string[]) =>
  execFileSync('bash', [path.join(ROOT, 'scripts/pg.sh'), ...args], {
    stdio: 'inherit',
    env: { ...process.env, PG_FSYNC: 'off' },
  });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const apiTail = () => apiOutput.split('\n').slice(-15).join('\n');

async function request(method: string, p: string, json?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(apiUrl + p, {
    method,
    headers: { authorization: `Bearer ${DEV_ADMIN_KEY}`, 'content-type': 'application/json', ...headers },
    body: json === undefined ? undefined : JSON.stringify(json),
    signal: AbortSignal.timeout(20_000),
  });
  return { status: res.status, headers: res.headers, body: (await res.json().catch(() => null)) as any };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(TEST_DATA, 'immediate-'));
  chmodSync(dir, 0o755);
  const pgPort = await freePort();
  pgctl('start', path.join(dir, 'pg'), String(pgPort));
  const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${pgPort}/postgres` });
  await admin.connect();
  await admin.query('CREATE DATABASE creditflow');
  await admin.end();
  url = `postgres://postgres@127.0.0.1:${pgPort}/creditflow`;
  // lib/migrate.ts through its compiled script (jest cannot load node-pg-migrate's ES module).
  execFileSync(process.execPath, [path.join(ROOT, 'dist/scripts/migrate.js')], {
    env: { ...process.env, DATABASE_URL: url, LOG_LEVEL: 'warn' },
    stdio: 'inherit',
  });

  const port = await freePort();
  apiUrl = `http://127.0.0.1:${port}`;
  api = spawn(process.execPath, [path.join(ROOT, 'dist/api/main.js')], {
    env: {
      ...process.env,
      DATABASE_URL: url,
      TEMPORAL_ADDRESS: process.env.TEST_TEMPORAL_ADDRESS,
      TEMPORAL_TASK_QUEUE: `immediate-${port}`,
      PORT: String(port),
      HOST: '127.0.0.1',
      CREDITFLOW_MODE: 'development',
      CREDITFLOW_ADMIN_KEY: '',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  api.stdout!.on('data', (d: Buffer) => (apiOutput += d.toString()));
  api.stderr!.on('data', (d: Buffer) => (apiOutput += d.toString()));
  api.once('exit', (code, signal) => (apiExit = { code, signal }));
  for (let i = 0; ; i++) {
    if (apiExit) throw new Error(`API exited at start-up:\n${apiTail()}`);
    // No worker runs here (ingestion needs none): wait for Postgres and Temporal only.
    const ok = await fetch(`${apiUrl}/readyz`).then(
      async (r) => {
        const b = (await r.json()) as { checks?: Record<string, string> };
        return b.checks?.postgres === 'up' && b.checks?.temporal === 'up';
      },
      () => false,
    );
    if (ok) break;
    if (i > 120) throw new Error(`API not ready:\n${apiTail()}`);
    await sleep(250);
  }
});
afterAll(async () => {
  if (api && !apiExit) api.kill('SIGKILL');
  await pool?.end();
  pgctl('stop', path.join(dir, 'pg'));
  rmSync(dir, { recursive: true, force: true });
});

it('stays up through `pg_ctl stop -m immediate` under ingest load and loses no acknowledged event', async () => {
  const card = { effectiveFrom: '2026-01-01T00:00:00Z', rules: [{ meter: 'calls', credits: '0.001' }] };
  expect((await request('PUT', '/v1/rate-cards/default', card)).status).toBe(201);
  const customers = Array.from({ length: CLIENTS }, (_, i) => `imm-${i}`);
  for (const id of customers) {
    expect((await request('POST', '/v1/customers', { id })).status).toBe(201);
    const grant = await request(
      'POST',
      `/v1/customers/${id}/grants`,
      { amount: '1000000', kind: 'purchased' },
      { 'idempotency-key': `g-${id}` },
    );
    expect(grant.status).toBe(201);
  }

  const acked = new Set<string>();
  const unexpected: string[] = [];
  const phase = { down: false };
  let downAnswers = 0;
  let maxLatency = 0;
  let stopping = false;
  const hardDeadline = Date.now() + 45_000;

  // Each client retries an event id until it is acknowledged, so every stored id ends up acknowledged.
  const client = async (n: number) => {
    for (let seq = 0; !stopping && !apiExit; seq++) {
      const id = `c${n}-${seq}`;
      const event = { id, customerId: customers[n], meter: 'calls', quantity: '1' };
      while (Date.now() < hardDeadline && !apiExit) {
        const t0 = Date.now();
        let status = 0;
        let retryAfter: string | null = null;
        let result: string | undefined;
        try {
          const res = await request('POST', '/v1/events', { events: [event] });
          status = res.status;
          retryAfter = res.headers.get('retry-after');
          result = res.body?.results?.[0]?.status;
        } catch (err) {
          unexpected.push(`${id}: ${String(err)}`);
        }
        maxLatency = Math.max(maxLatency, Date.now() - t0);
        if (status === 200 && (result === 'accepted' || result === 'duplicate')) {
          acked.add(id);
          break;
        }
        if (status === 503 && retryAfter) {
          if (phase.down) downAnswers++;
        } else if (status !== 0) unexpected.push(`${id}: ${status} ${result ?? ''} retry-after=${retryAfter}`);
        await sleep(100);
      }
    }
  };
  const running = customers.map((_, n) => client(n));

  await sleep(3000);
  // Hold customer 0's wallet lock so an ingest transaction is certainly mid-flight when Postgres dies.
  const locker = new pg.Client({ connectionString: url });
  locker.on('error', () => undefined); // it dies with the server
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query(`SELECT 1 FROM wallets WHERE customer_id = $1 FOR UPDATE`, [customers[0]]);
  await sleep(500);
  const ackedBeforeCrash = acked.size;
  pgctl('crash', path.join(dir, 'pg'));
  phase.down = true;
  await sleep(DOWN_MS);
  phase.down = false;
  pgctl('start', path.join(dir, 'pg'), String(new URL(url).port));
  const ackedAtRestart = acked.size;
  await sleep(4000);
  stopping = true;
  await Promise.all(running);

  expect({ exit: apiExit, output: apiExit ? apiTail() : '' }).toEqual({ exit: null, output: '' });
  expect(() => process.kill(api.pid!, 0)).not.toThrow();
  expect(unexpected.slice(0, 5)).toEqual([]);
  expect(ackedBeforeCrash).toBeGreaterThan(CLIENTS);
  expect(downAnswers).toBeGreaterThan(CLIENTS); // the clients were answered (503) while Postgres was down
  expect(maxLatency).toBeLessThan(LATENCY_BOUND_MS);
  expect(acked.size).toBeGreaterThan(ackedAtRestart + CLIENTS); // and succeeded again after the restart

  pool = createPool(url, 2);
  const stored = await pool.query<{ id: string }>(`SELECT id FROM usage_events WHERE customer_id = ANY($1)`, [
    customers,
  ]);
  const storedIds = new Set(stored.rows.map((r) => r.id));
  expect(storedIds.size).toBe(acked.size);
  expect([...acked].filter((id) => !storedIds.has(id))).toEqual([]);
  expect(await findViolations(pool)).toEqual([]);
}, 90_000);
