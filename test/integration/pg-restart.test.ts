import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { findViolations } from '../../db/invariants';
import { createPool, type Pool } from '../../db/pool';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { ROOT, TEST_DATA } from '../support/paths';
import { freePort } from '../support/ports';

/** A Postgres restart under a running API: 503 with Retry-After while it is down, no acknowledged write lost. */
let dir: string;
let port: number;
let pool: Pool;
let api: TestApi;
const pgctl = (...args: string[]) =>
  execFileSync('bash', [path.join(ROOT, 'scripts/pg.sh'), ...args], {
    stdio: 'inherit',
    env: { ...process.env, PG_FSYNC: 'off' },
  });

beforeAll(async () => {
  dir = mkdtempSync(path.join(TEST_DATA, 'restart-'));
  chmodSync(dir, 0o755);
  port = await freePort();
  pgctl('start', path.join(dir, 'pg'), String(port));
  const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
  await admin.connect();
  await admin.query('CREATE DATABASE creditflow');
  await admin.end();
  const url = `postgres://postgres@127.0.0.1:${port}/creditflow`;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  for (const f of readdirSync(path.join(ROOT, 'migrations')).sort()) {
    await c.query(readFileSync(path.join(ROOT, 'migrations', f), 'utf8'));
  }
  await c.end();
  pool = createPool(url, 5);
  api = await startApi(pool);
});
afterAll(async () => {
  await api.close();
  await pool.end();
  pgctl('stop', path.join(dir, 'pg'));
  rmSync(dir, { recursive: true, force: true });
});

it('answers 503 while Postgres is down and recovers after it restarts, losing nothing acknowledged', async () => {
  const key = await makeKey(pool, 'admin');
  const grant = (idem: string) =>
    call(api.url, 'POST', '/v1/customers/acme/grants', {
      key,
      json: { amount: '10', kind: 'purchased' },
      headers: { 'idempotency-key': idem },
    });
  expect((await call(api.url, 'POST', '/v1/customers', { key, json: { id: 'acme' } })).status).toBe(201);
  expect((await grant('before')).status).toBe(201);

  pgctl('stop', path.join(dir, 'pg'));
  const down = await call(api.url, 'GET', '/v1/customers/acme/balance', { key });
  expect(down.status).toBe(503);
  expect(down.headers.get('retry-after')).toBe('5');
  expect(down.text).not.toMatch(/ECONNREFUSED|\n\s+at /);
  expect((await call(api.url, 'GET', '/readyz')).status).toBe(503);

  pgctl('start', path.join(dir, 'pg'), String(port));
  let after = await grant('after');
  for (let i = 0; i < 10 && after.status !== 201; i++) after = await grant('after');
  expect(after.status).toBe(201);
  expect((await grant('before')).headers.get('idempotent-replayed')).toBe('true'); // the pre-restart write survived
  const bal = await call(api.url, 'GET', '/v1/customers/acme/balance', { key });
  expect(bal.body.available).toBe('20');
  expect(await findViolations(pool)).toEqual([]);
});
