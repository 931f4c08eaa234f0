import { randomUUID } from 'node:crypto';
import { WorkflowNotFoundError } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { HoldsClient } from '../../client/holds';
import { getHold } from '../../db/holds';
import { findViolations } from '../../db/invariants';
import { createPool, type Pool } from '../../db/pool';
import { sha256 } from '../../lib/hash';
import { composeKey } from '../../lib/ids';
import { reservationWorkflowId } from '../../workflows';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { temporalHarness } from '../support/temporal';

/**
 * Holds under hostile use: bursts far above the API's pool, ids built to collide, unknown
 * customers, operations after the deadline, and a TTL that fires while an extend is running.
 */
const API_POOL = 4;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let apiPool: Pool;
let t: Awaited<ReturnType<typeof temporalHarness>>;
let worker: Worker | null = null;
let running: Promise<void> | null = null;
let api: TestApi;
let admin: string;
let service: string;
let slowExtends = 0;

/** The real activities; extendHold can be slowed down after its commit, across the hold's deadline. */
async function startWorker() {
  const real = createActivities({ pool, temporal: () => Promise.resolve(t.client) });
  worker = await Worker.create({
    connection: await NativeConnection.connect({ address: t.address }),
    taskQueue: t.taskQueue,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    activities: {
      ...real,
      extendHold: async (c: Parameters<typeof real.extendHold>[0]) => {
        const r = await real.extendHold(c);
        // Committed; the workflow hears of it only later (its mutex stays held across the deadline).
        if (slowExtends > 0) await new Promise((resolve) => setTimeout(resolve, slowExtends));
        return r;
      },
    },
  });
  running = worker.run();
}
async function stopWorker() {
  worker?.shutdown();
  await running;
  worker = null;
}

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  apiPool = createPool(db.url, API_POOL);
  t = await temporalHarness(pool);
  await startWorker();
  api = await startApi(apiPool, {
    holds: () => Promise.resolve(new HoldsClient(t.client, t.taskQueue, { timeoutMs: 4000 })),
  });
  admin = await makeKey(pool, 'admin');
  service = await makeKey(pool, 'service');
});
afterAll(async () => {
  await api.close();
  await stopWorker();
  await t.close();
  await apiPool.end();
  await db.drop();
});

async function customer(grant: string, id = `hh-${randomUUID().slice(0, 8)}`) {
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  const g = await call(api.url, 'POST', `/v1/customers/${encodeURIComponent(id)}/grants`, {
    key: admin,
    json: { amount: grant, kind: 'purchased' },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(g.status).toBe(201);
  return id;
}
const post = (path: string, json: unknown, idem: string = randomUUID()) =>
  call(api.url, 'POST', path, { key: service, json, headers: { 'idempotency-key': idem } });
/** As a client does: a 503 (Temporal or the worker slow on a loaded machine) is retried with the same key. */
async function postAnswered(path: string, json: unknown) {
  const idem = randomUUID();
  let r = await post(path, json, idem);
  for (let i = 0; r.status === 503 && i < 10; i++) {
    expect(r.headers.get('retry-after')).toBeTruthy();
    await new Promise((resolve) => setTimeout(resolve, 500));
    r = await post(path, json, idem);
  }
  return r;
}

it(`a burst of ${3 * API_POOL * 4} concurrent captures/extends/settles/releases (3 × the pool each) is all answered`, async () => {
  const n = 3 * API_POOL;
  const c = await customer(String(4 * n * 2));
  const ids = await Promise.all(
    Array.from({ length: 4 * n }, async (_, i) => {
      const r = await postAnswered('/v1/holds', { customerId: c, holdId: `b${i}`, amount: '2' });
      expect(r.status).toBe(201);
      return `b${i}`;
    }),
  );
  const ops = ids.map((h, i) => {
    switch (i % 4) {
      case 0:
        return postAnswered(`/v1/holds/${h}/capture`, { customerId: c, amount: '1' });
      case 1:
        return postAnswered(`/v1/holds/${h}/extend`, { customerId: c, ttlSeconds: 900 });
      case 2:
        return postAnswered(`/v1/holds/${h}/settle`, { customerId: c, amount: '1.5' });
      default:
        return postAnswered(`/v1/holds/${h}/release`, { customerId: c });
    }
  });
  const started = Date.now();
  const answers = await Promise.all(ops);
  expect(Date.now() - started).toBeLessThan(90_000);
  expect(answers.map((a) => a.status).filter((s) => s !== 200)).toEqual([]);
  expect((await call(api.url, 'GET', '/readyz')).status).toBe(200);
  expect((await call(api.url, 'GET', `/v1/customers/${c}`, { key: service })).status).toBe(200);
  expect(await findViolations(pool)).toEqual([]);
}, 120_000);

it('ids built to collide stay apart: customer "P" + key "q:r" and customer "P:q" + key "r"', async () => {
  expect(composeKey('api', 'P', 'q:r')).not.toBe(composeKey('api', 'P:q', 'r'));
  const base = `cx${randomUUID().slice(0, 6)}`;
  const a = await customer('10', base);
  const b = await customer('10', `${base}:q`);
  const first = await post('/v1/holds', { customerId: a, amount: '3' }, 'q:r');
  const second = await post('/v1/holds', { customerId: b, amount: '4' }, 'r');
  expect(first.status).toBe(201);
  expect(second.status).toBe(201);
  expect(second.headers.get('idempotent-replayed')).toBeNull();
  expect(second.body).toMatchObject({ customerId: b, amount: '4' });
  expect(second.body.holdId).not.toBe(first.body.holdId);
  expect(first.body.workflowId).not.toBe(second.body.workflowId);
  // A hold id may not contain ':' (it would make `hold:<customer>:<hold>` ambiguous).
  expect((await post('/v1/holds', { customerId: a, holdId: 'q:r', amount: '1' })).status).toBe(400);
});

it('a placement retried after its reservation finished (first reply lost) is answered with that hold', async () => {
  const c = await customer('10');
  const key = randomUUID();
  const first = await post('/v1/holds', { customerId: c, amount: '3' }, key);
  expect(first.status).toBe(201);
  expect((await post(`/v1/holds/${first.body.holdId}/release`, { customerId: c })).status).toBe(200);
  // As if the first answer had been a 503: no stored reply for the key.
  await pool.query(`DELETE FROM http_idempotency WHERE scope = $1`, [composeKey('api', 'hold', 'place', c, key)]);
  const retry = await post('/v1/holds', { customerId: c, amount: '3' }, key);
  expect(retry.status).toBe(201);
  expect(retry.body).toMatchObject({ holdId: first.body.holdId, status: 'released', amount: '3' });
  // The same for a placement that was refused for lack of credits: the retry gets that 402.
  const refusedKey = randomUUID();
  const refused = await post('/v1/holds', { customerId: c, amount: '50' }, refusedKey);
  expect(refused.status).toBe(402);
  // Its reservation has finished (the hold id is derived from the key, as the API does).
  const refusedHold = `h_${sha256(`${c}\u0000${refusedKey}`).slice(0, 32)}`;
  expect((await t.client.workflow.getHandle(reservationWorkflowId(c, refusedHold)).result()).status).toBe('rejected');
  await pool.query(`DELETE FROM http_idempotency WHERE scope = $1`, [
    composeKey('api', 'hold', 'place', c, refusedKey),
  ]);
  const again = await post('/v1/holds', { customerId: c, amount: '50' }, refusedKey);
  expect(again.status).toBe(402);
  expect(again.body).toMatchObject({ available: '10', shortfall: '40' });
  // Another key naming that finished hold explicitly is still refused: ids are never reused.
  expect((await post('/v1/holds', { customerId: c, holdId: first.body.holdId, amount: '3' })).status).toBe(409);
});

it('a hold for an unknown customer is a 404 before any workflow starts', async () => {
  const r = await post('/v1/holds', { customerId: 'nobody-here', holdId: 'ghost', amount: '1' });
  expect(r.status).toBe(404);
  await expect(
    t.client.workflow.getHandle(reservationWorkflowId('nobody-here', 'ghost')).describe(),
  ).rejects.toBeInstanceOf(WorkflowNotFoundError);
});

it('a TTL that fires while an extend runs: the extend wins', async () => {
  const c = await customer('10');
  expect((await post('/v1/holds', { customerId: c, holdId: 'race', amount: '5', ttlSeconds: 3 })).status).toBe(201);
  slowExtends = 3000; // the extend commits before the deadline, returns after it
  try {
    await new Promise((r) => setTimeout(r, 1500));
    const e = await post('/v1/holds/race/extend', { customerId: c, ttlSeconds: 600 });
    expect(e.status).toBe(200);
  } finally {
    slowExtends = 0;
  }
  await new Promise((r) => setTimeout(r, 1000)); // the fired timer has had its turn
  const h = (await getHold(pool, c, 'race'))!;
  expect(h.status).toBe('active');
  expect(h.expiresAt.getTime()).toBeGreaterThan(Date.now() + 500_000);
  const releases = await pool.query(
    `SELECT count(*)::int n FROM ledger_transactions WHERE customer_id = $1 AND type = 'hold_release'`,
    [c],
  );
  expect(releases.rows[0].n).toBe(0);
  expect((await post('/v1/holds/race/release', { customerId: c })).status).toBe(200);
}, 60_000);

it('an extend sent before the deadline that reaches the workflow with the TTL timer: the answer matches the ledger', async () => {
  const c = await customer('10');
  const placed = await post('/v1/holds', { customerId: c, holdId: 'same-task', amount: '5', ttlSeconds: 4 });
  expect(placed.status).toBe(201);
  const deadline = Date.parse(placed.body.expiresAt);
  await stopWorker();
  const key = randomUUID();
  let first: Awaited<ReturnType<typeof post>>;
  try {
    // Sent before the deadline; no worker, so it waits (503 after the client's bound) and the
    // update and the fired timer reach the workflow in the same task once a worker is back.
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now() - 1500)));
    first = await post('/v1/holds/same-task/extend', { customerId: c, ttlSeconds: 600 }, key);
    expect(first.status).toBe(503);
    await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now() + 500)));
  } finally {
    await startWorker();
  }
  let answer = await post('/v1/holds/same-task/extend', { customerId: c, ttlSeconds: 600 }, key);
  for (let i = 0; answer.status === 503 && i < 20; i++)
    answer = await post('/v1/holds/same-task/extend', { customerId: c, ttlSeconds: 600 }, key);
  const handle = t.client.workflow.getHandle(reservationWorkflowId(c, 'same-task'));
  // Either the extend won (200, active, the new deadline) or it came too late (422, expired):
  // never a 200 for an extend whose hold the TTL then expired.
  if (answer.status === 200) {
    const h = (await getHold(pool, c, 'same-task'))!;
    expect(h.status).toBe('active');
    expect(h.expiresAt.toISOString()).toBe(answer.body.expiresAt);
    await post('/v1/holds/same-task/release', { customerId: c });
  } else {
    expect(answer.status).toBe(422);
    expect(answer.body.code).toBe('HoldExpired');
    expect((await handle.result()).status).toBe('expired'); // the TTL, once the worker is back
    expect((await getHold(pool, c, 'same-task'))!.status).toBe('expired');
  }
  expect(await findViolations(pool)).toEqual([]);
}, 90_000);

it('past its deadline with no worker: settle/capture/extend → 422 HoldExpired at once; the TTL releases it later', async () => {
  const c = await customer('10');
  expect((await post('/v1/holds', { customerId: c, holdId: 'late', amount: '6', ttlSeconds: 2 })).status).toBe(201);
  await stopWorker();
  try {
    await new Promise((r) => setTimeout(r, 2500));
    for (const [op, body] of [
      ['settle', { customerId: c, amount: '6' }],
      ['capture', { customerId: c, amount: '1' }],
      ['extend', { customerId: c, ttlSeconds: 60 }],
    ] as const) {
      const started = Date.now();
      const r = await post(`/v1/holds/late/${op}`, body);
      expect(Date.now() - started).toBeLessThan(2000);
      expect(r.status).toBe(422);
      expect(r.body).toMatchObject({ status: 422, code: 'HoldExpired' });
    }
    expect((await getHold(pool, c, 'late'))!.status).toBe('active'); // the timer has not run yet
  } finally {
    await startWorker();
  }
  const deadline = Date.now() + 20_000;
  while ((await getHold(pool, c, 'late'))!.status === 'active' && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 200));
  expect((await getHold(pool, c, 'late'))!).toMatchObject({ status: 'expired', captured: 0n });
  expect(await findViolations(pool)).toEqual([]);
}, 60_000);
