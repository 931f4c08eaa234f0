import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { HoldsClient } from '../../client/holds';
import { notifyLifecycle } from '../../client/lifecycle';
import { assertWorkerPolling } from '../../client/workers';
import { credits } from '../../domain/amount';
import { getCustomer } from '../../db/customers';
import { getHold } from '../../db/holds';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { HoldLedger, holdView } from '../../ledger/holds';
import { Ledger } from '../../ledger/ledger';
import { requestHash } from '../../lib/hash';
import { createLogger } from '../../lib/logger';
import { TemporalHandle } from '../../lib/temporal';
import { startTemporalDevServer } from '../../lib/temporal-dev-server';
import { creditLifecycle, deadlinesQuery, lifecycleWorkflowId } from '../../workflows/lifecycle';
import { reservation, statusQuery } from '../../workflows/reservation';
import { call, makeKey, startApi, type Call, type TestApi } from '../support/api';
import { chaosSuite, sleep, within } from '../support/chaos';
import { ROOT, TEST_DATA } from '../support/paths';
import { freePort } from '../support/ports';

/**
 * Chaos suite (issue 9): the real worker process (dist/worker/main.js) SIGKILLs itself at every
 * step boundary of place, capture, extend, settle, release and the lifecycle tick (fault
 * injection: CREDITFLOW_TEST_CRASH=<activity>:before|after). The client retries the same request
 * with the same Idempotency-Key until it gets a final answer; that answer must match the ledger,
 * each step must have booked exactly once, and no hold may stay held without a live workflow.
 *
 * Bounded time: every case has its own task queue and all cases run at once (they mostly wait: on
 * the workflow-task timeout, the lifecycle activity's timeout, the poller list going stale), with
 * at most `startups` worker processes bundling their workflows at a time. Recovery workers run
 * in-process on the run's pre-built bundle.
 */
const CLIENT_BOUND_MS = 4000; // the API's HoldsClient timeout in this file (production: 10 s)
const SLACK_MS = 4000; // a loaded 2-core machine

let pool: Pool;
let client: Client;
let service: string;

const { scenario, track, limited, recoveryWorker, workerProcess } = chaosSuite({
  startups: 3,
  ready: async (c) => {
    ({ pool, client } = c);
    service = await makeKey(pool, 'service');
  },
});

const polling = (taskQueue: string) =>
  assertWorkerPolling(client, taskQueue).then(
    () => true,
    () => false,
  );
const queue = (name: string) => `chaos-${name}-${randomUUID().slice(0, 8)}`;

async function apiFor(taskQueue: string): Promise<TestApi> {
  const holds = new HoldsClient(client, taskQueue, { timeoutMs: CLIENT_BOUND_MS });
  return track(await startApi(pool, { holds: () => Promise.resolve(holds) }));
}

async function customer(grant: string): Promise<string> {
  const id = `chaos-${randomUUID().slice(0, 8)}`;
  await createCustomer(pool, { id }, requestHash({ id }));
  await new Ledger(pool).grant(
    { customerId: id, key: `g:${id}`, requestHash: 'g' },
    { amount: credits(grant), kind: 'purchased' },
  );
  return id;
}

interface Req {
  path: string;
  json: unknown;
  key: string;
}
const send = (api: TestApi, r: Req) =>
  call(api.url, 'POST', r.path, { key: service, json: r.json, headers: { 'idempotency-key': r.key } });

/** Sends the same request with the same key until the answer is not a 503 (bounded). */
async function untilFinal(api: TestApi, r: Req, ms = 90_000): Promise<Call> {
  const deadline = Date.now() + ms;
  for (;;) {
    const res = await send(api, r);
    if (res.status !== 503) return res;
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    if (Date.now() > deadline) throw new Error(`still 503 after ${ms} ms: ${res.text}`);
    await sleep(500);
  }
}

async function until(what: () => Promise<boolean>, ms: number, label: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error(`${label}: not within ${ms} ms`);
    await sleep(250);
  }
}

const txTypes = async (customerId: string) =>
  (
    await pool.query<{ type: string; reference: string | null }>(
      `SELECT type, reference FROM ledger_transactions WHERE customer_id = $1 ORDER BY seq`,
      [customerId],
    )
  ).rows.map((r) => `${r.type}${r.reference?.startsWith('hold:') ? '@' + r.reference.slice(5) : ''}`);
const count = async (customerId: string, type: string) =>
  (await txTypes(customerId)).filter((t) => t.split('@')[0] === type).length;
const wallet = async (customerId: string) => {
  const w = (await getCustomer(pool, customerId))!.wallet;
  return { available: w.available, held: w.held };
};
const workflowStatus = (workflowId: string) =>
  client.workflow
    .getHandle(workflowId)
    .describe()
    .then((d) => d.status.name);

/** No hold of the customer is held without a running reservation workflow. */
async function expectNoPhantomHolds(customerId: string): Promise<void> {
  const active = await pool.query<{ workflow_id: string }>(
    `SELECT workflow_id FROM holds WHERE customer_id = $1 AND status = 'active'`,
    [customerId],
  );
  for (const h of active.rows) expect(await workflowStatus(h.workflow_id)).toBe('RUNNING');
}

type Op = 'place' | 'capture' | 'extend' | 'settle' | 'release';
const STEPS: { activity: string; op: Op; type: string }[] = [
  { activity: 'placeHold', op: 'place', type: 'hold_place' },
  { activity: 'captureHold', op: 'capture', type: 'hold_capture' },
  { activity: 'extendHold', op: 'extend', type: 'hold_extend' },
  { activity: 'settleHold', op: 'settle', type: 'hold_settle' },
  { activity: 'releaseHold', op: 'release', type: 'hold_release' },
];
const BODY: Record<Exclude<Op, 'place'>, (customerId: string) => Record<string, unknown>> = {
  capture: (customerId) => ({ customerId, amount: '15' }),
  // ttlSeconds: the new deadline is fixed by the first call; a retried task must book the same one.
  extend: (customerId) => ({ customerId, amount: '10', ttlSeconds: 7200 }),
  settle: (customerId) => ({ customerId, amount: '25' }),
  release: (customerId) => ({ customerId }),
};
/** Wallet after the step, from a grant of 100 and a hold of 40. */
const WALLET: Record<Op, { available: bigint; held: bigint }> = {
  place: { available: credits('60'), held: credits('40') },
  capture: { available: credits('60'), held: credits('25') },
  extend: { available: credits('50'), held: credits('50') },
  settle: { available: credits('75'), held: 0n },
  release: { available: credits('100'), held: 0n },
};

async function holdCase(s: (typeof STEPS)[number], when: 'before' | 'after'): Promise<void> {
  const taskQueue = queue(`${s.op}-${when}`);
  const api = await apiFor(taskQueue);
  const c = await customer('100');
  const crashing = await workerProcess(taskQueue, `${s.activity}:${when}`);

  const place: Req = { path: '/v1/holds', json: { customerId: c, amount: '40', ttlSeconds: 3600 }, key: randomUUID() };
  let req = place;
  let originalDeadline = '';
  if (s.op !== 'place') {
    // Setup, not the step under test: on a loaded machine the new worker may not poll yet (503), and a
    // client retries the same key.
    const placed = await untilFinal(api, place);
    expect(placed.status).toBe(201);
    originalDeadline = placed.body.expiresAt;
    req = { path: `/v1/holds/${placed.body.holdId}/${s.op}`, json: BODY[s.op](c), key: randomUUID() };
  }
  const sentAt = Date.now();
  const first = send(api, req).then((r) => ({ r, ms: Date.now() - sentAt }));
  const died = await within(crashing.exited, 30_000);
  expect(died).toEqual({ code: null, signal: 'SIGKILL' });
  // The fault fired at the intended boundary: the step's transaction is there only after it.
  expect(await count(c, s.type)).toBe(when === 'after' ? 1 : 0);

  const recovery = await recoveryWorker(taskQueue);
  const { r: firstAnswer, ms } = await first;
  if (firstAnswer.status === 503) {
    expect(firstAnswer.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(ms).toBeLessThan(CLIENT_BOUND_MS + SLACK_MS);
  }
  const res = firstAnswer.status === 503 ? await untilFinal(api, req) : firstAnswer;

  const holdId =
    s.op === 'place'
      ? ((await pool.query<{ id: string }>(`SELECT id FROM holds WHERE customer_id = $1`, [c])).rows[0]?.id ?? '-')
      : req.path.split('/')[3]!;
  const row = await getHold(pool, c, holdId);
  // First the whole picture (one diff shows a phantom hold), then the details.
  const finished = s.op === 'settle' ? 'settled' : s.op === 'release' ? 'released' : 'active';
  if (row && finished !== 'active') {
    // It closes in the task that completed the update; a late answer can overtake that by a hair.
    await within(
      client.workflow
        .getHandle(row.workflowId)
        .result()
        .catch(() => undefined),
      20_000,
    );
  }
  expect({
    answer: res.status,
    hold: row?.status ?? null,
    workflow: row ? await workflowStatus(row.workflowId).catch(() => 'NOT_FOUND') : null,
    wallet: await wallet(c),
    ledger: await txTypes(c),
  }).toEqual({
    answer: s.op === 'place' ? 201 : 200,
    hold: finished,
    workflow: finished === 'active' ? 'RUNNING' : 'COMPLETED',
    wallet: WALLET[s.op],
    // Exactly once: the customer's whole ledger is the grant, the placement and the step.
    ledger: ['grant', `hold_place@${holdId}`, ...(s.op === 'place' ? [] : [`${s.type}@${holdId}`])],
  });
  const view = holdView(row!);
  const got = await call(api.url, 'GET', `/v1/holds/${holdId}?customerId=${c}`, { key: service });
  expect(got.body).toEqual(view);
  const handle = client.workflow.getHandle<typeof reservation>(view.workflowId);
  if (s.op === 'place' || s.op === 'capture' || s.op === 'extend') {
    expect(res.body).toEqual(view);
    expect(view).toMatchObject({ status: 'active', captured: s.op === 'capture' ? '15' : '0' });
    const state = await handle.query(statusQuery);
    expect(state).toMatchObject({ status: 'active', hold: view, expiresAt: view.expiresAt });
    if (s.op === 'extend') {
      expect(view).toMatchObject({ amount: '50', held: '50' });
      expect(Date.parse(view.expiresAt)).toBeGreaterThan(Date.parse(originalDeadline) + 3_000_000);
    }
  } else {
    const status = s.op === 'settle' ? 'settled' : 'released';
    expect(res.body).toEqual(
      s.op === 'settle' ? { status, captured: '25', released: '15', overage: '0', hold: view } : { status, hold: view },
    );
    expect(view.status).toBe(status);
    expect(await handle.result()).toMatchObject({ status, hold: view });
  }
  await expectNoPhantomHolds(c);
  expect(await findViolations(pool)).toEqual([]);
  // The final answer is stored: a further retry replays it.
  const again = await send(api, req);
  expect([again.status, again.headers.get('idempotent-replayed')]).toEqual([res.status, 'true']);
  expect(again.body).toEqual(res.body);
  await recovery.stop();
}

/** A customer with a lot and a recurring allowance that both end at `end`, plus purchased credits. */
async function lifecycleCustomer(end: Date) {
  const c = `chaos-${randomUUID().slice(0, 8)}`;
  await createCustomer(pool, { id: c }, requestHash({ id: c }));
  // Granted as of a minute before `end`: a loaded machine may take seconds to get here.
  const ledger = new Ledger(pool, () => new Date(end.getTime() - 60_000));
  const grant = (k: string, input: Parameters<Ledger['grant']>[1]) =>
    ledger.grant({ customerId: c, key: `${k}:${c}`, requestHash: k }, input);
  await grant('purchased', { amount: credits('100'), kind: 'purchased' });
  const promo = await grant('promo', { amount: credits('5'), kind: 'promotional', expiresAt: end });
  const allowance = await grant('allowance', {
    amount: credits('10'),
    kind: 'allowance',
    expiresAt: end, // the first period ends in seconds; the next one a day later
    recurrence: { every: 'day' },
    rolloverCap: credits('4'),
  });
  return { c, promo: promo.result.lot.id, allowance: allowance.result.lot.id };
}

const lotStatus = async (lotId: string) =>
  (await pool.query<{ status: string }>(`SELECT status FROM credit_lots WHERE id = $1`, [lotId])).rows[0]!.status;

async function lifecycleCase(when: 'before' | 'after'): Promise<void> {
  const taskQueue = queue(`tick-${when}`);
  const end = new Date(Date.now() + 2000);
  const { c, promo, allowance } = await lifecycleCustomer(end);
  const crashing = await workerProcess(taskQueue, `lifecycleTick:${when}`);
  if (Date.now() < end.getTime() + 200) await sleep(end.getTime() + 200 - Date.now());
  // The first tick is due now: it books the expiry and the renewal, and the worker dies at its boundary.
  await notifyLifecycle(client, taskQueue, { customerId: c });
  expect(await within(crashing.exited, 30_000)).toEqual({ code: null, signal: 'SIGKILL' });
  expect([await count(c, 'expiry'), await count(c, 'renewal')]).toEqual(when === 'after' ? [1, 1] : [0, 0]);

  // The tick is an ordinary activity: its attempt on the dead worker times out (start-to-close,
  // 1 minute), then it runs again on the new worker.
  const recovery = await recoveryWorker(taskQueue);
  const handle = client.workflow.getHandle<typeof creditLifecycle>(lifecycleWorkflowId(c));
  await until(async () => (await handle.query(deadlinesQuery)).lastTickAt !== null, 120_000, 'lifecycle tick');
  const state = await handle.query(deadlinesQuery);
  const nextEnd = new Date(end.getTime() + 86_400_000).toISOString();
  expect(state.upcoming.map((d) => `${d.kind}@${d.at}`).sort()).toEqual([`expiry@${nextEnd}`, `renewal@${nextEnd}`]);
  expect((await txTypes(c)).sort()).toEqual(['expiry', 'grant', 'grant', 'grant', 'renewal']);
  expect([await lotStatus(promo), await lotStatus(allowance)]).toEqual(['expired', 'expired']);
  // 100 purchased + 10 of the new period + 4 rolled over; 5 + 6 expired.
  expect(await wallet(c)).toEqual({ available: credits('114'), held: 0n });
  const expired = await pool.query<{ sum: string }>(
    `SELECT sum(amount)::text AS sum FROM ledger_entries WHERE customer_id = $1 AND account = 'expired'`,
    [c],
  );
  expect(BigInt(expired.rows[0]!.sum)).toBe(credits('11'));
  expect(await workflowStatus(lifecycleWorkflowId(c))).toBe('RUNNING');
  expect(await findViolations(pool)).toEqual([]);
  await recovery.stop();
}

function temporalBin(): string | undefined {
  if (process.env.TEMPORAL_BIN) return process.env.TEMPORAL_BIN;
  const local = path.join(ROOT, '.tools', 'bin', 'temporal');
  return existsSync(local) ? local : undefined;
}

async function timed(p: Promise<Call>): Promise<Call & { ms: number }> {
  const t0 = Date.now();
  const r = await p;
  return { ...r, ms: Date.now() - t0 };
}

const expect503 = (r: Call & { ms: number }, boundMs = CLIENT_BOUND_MS + SLACK_MS) => {
  expect({ status: r.status, retryAfter: r.headers.get('retry-after') }).toEqual({
    status: 503,
    retryAfter: expect.stringMatching(/^\d+$/),
  });
  expect(r.ms).toBeLessThan(boundMs);
};

/** Worker killed: 503 within the bound, readiness sees no poller, then the same keys get the real outcome. */
async function workerKilled(): Promise<void> {
  const taskQueue = queue('no-worker');
  const api = await apiFor(taskQueue);
  const c = await customer('100');
  const w = await workerProcess(taskQueue);
  await until(() => polling(taskQueue), 15_000, 'worker polling');
  const placed = await send(api, { path: '/v1/holds', json: { customerId: c, amount: '30' }, key: randomUUID() });
  expect(placed.status).toBe(201);
  w.proc.kill('SIGKILL');
  await w.exited;
  const killedAt = Date.now();

  const place: Req = { path: '/v1/holds', json: { customerId: c, amount: '20' }, key: randomUUID() };
  const h1 = placed.body.holdId as string;
  const capture: Req = { path: `/v1/holds/${h1}/capture`, json: { customerId: c, amount: '5' }, key: randomUUID() };
  const [p1, c1] = await Promise.all([timed(send(api, place)), timed(send(api, capture))]);
  expect503(p1);
  expect503(c1);
  expect(await wallet(c)).toEqual({ available: credits('70'), held: credits('30') });

  // Readiness (client/workers.ts, for /readyz): a killed worker's last poll goes stale within 90 s.
  await until(async () => !(await polling(taskQueue)), 100_000, 'readiness reports no worker');
  expect(Date.now() - killedAt).toBeLessThan(100_000);

  const recovery = await recoveryWorker(taskQueue);
  await until(() => polling(taskQueue), 15_000, 'worker polling again');
  const p2 = await untilFinal(api, place);
  const c2 = await untilFinal(api, capture);
  expect([p2.status, c2.status]).toEqual([201, 200]);
  const h2 = p2.body.holdId as string;
  expect(p2.body).toEqual({ ...holdView((await getHold(pool, c, h2))!), workflowId: p2.body.workflowId });
  expect(c2.body).toEqual(holdView((await getHold(pool, c, h1))!));
  expect(c2.body).toMatchObject({ status: 'active', captured: '5', held: '25' });
  expect((await txTypes(c)).sort()).toEqual(
    ['grant', `hold_place@${h1}`, `hold_capture@${h1}`, `hold_place@${h2}`].sort(),
  );
  expect(await wallet(c)).toEqual({ available: credits('50'), held: credits('45') });
  await expectNoPhantomHolds(c);
  expect(await findViolations(pool)).toEqual([]);
  await recovery.stop();
}

/** An API composed as api/main.ts composes it: one TemporalHandle, the HoldsClient's default bound. */
async function productionApi(temporal: TemporalHandle): Promise<TestApi> {
  let holds: HoldsClient | undefined;
  const taskQueue = queue('prod');
  return track(
    await startApi(pool, {
      temporalReady: () => temporal.ready(),
      holds: async () => (holds ??= new HoldsClient(await temporal.client(), taskQueue)),
    }),
  );
}

/** Temporal killed (a second dev server, stopped) or never reached: 503 within 5 s, /readyz not ready. */
async function temporalDown(): Promise<void> {
  const c = await customer('100');
  // An active hold on the ledger, so a capture passes the API's ledger checks and reaches Temporal.
  const placed = await new HoldLedger(new Ledger(pool)).place(
    { key: `p:${c}`, customerId: c, requestHash: 'p' },
    { holdId: 'job-1', workflowId: `hold:${c}:job-1`, amount: credits('10'), expiresAt: new Date(Date.now() + 3.6e6) },
  );
  expect(placed.result.outcome).toBe('placed');
  const before = await wallet(c);

  const server = await limited(async () =>
    startTemporalDevServer({
      bin: temporalBin(),
      port: await freePort(),
      fast: true,
      logFile: path.join(TEST_DATA, 'temporal-chaos.log'),
    }),
  );
  const killedHandle = new TemporalHandle(server.address, 'default', createLogger('chaos', 'silent'));
  const killed = await productionApi(killedHandle);
  expect((await call(killed.url, 'GET', '/readyz')).status).toBe(200); // connected
  await server.stop();
  const nowhereHandle = new TemporalHandle(`127.0.0.1:${await freePort()}`, 'default', createLogger('chaos', 'silent'));
  const nowhere = await productionApi(nowhereHandle);

  const verdict = (r: Call & { ms: number }) =>
    `${r.status}${r.headers.get('retry-after') ? ' Retry-After' : ''} ${r.ms < 5000 ? 'within 5 s' : `after ${r.ms} ms`}`;
  const seen: Record<string, string> = {};
  for (const [name, api] of [
    ['killed', killed],
    ['nowhere', nowhere],
  ] as const) {
    const [p, k] = await Promise.all([
      timed(send(api, { path: '/v1/holds', json: { customerId: c, amount: '1' }, key: randomUUID() })),
      timed(send(api, { path: '/v1/holds/job-1/capture', json: { customerId: c, amount: '1' }, key: randomUUID() })),
    ]);
    seen[`${name}: POST /v1/holds`] = verdict(p);
    seen[`${name}: capture`] = verdict(k);
    seen[`${name}: /readyz`] = String((await call(api.url, 'GET', '/readyz')).status);
  }
  const fast = '503 Retry-After within 5 s';
  expect(seen).toEqual({
    'killed: POST /v1/holds': fast,
    'killed: capture': fast,
    'killed: /readyz': '503',
    'nowhere: POST /v1/holds': fast,
    'nowhere: capture': fast,
    'nowhere: /readyz': '503',
  });
  expect(await wallet(c)).toEqual(before);
  await killedHandle.close();
  await nowhereHandle.close();
}

// The longest first (the startup limiter is first come, first served).
describe('chaos: lifecycle tick', () => {
  for (const when of ['before', 'after'] as const) {
    scenario(`lifecycleTick:${when}: exactly one expiry and one renewal`, () => lifecycleCase(when), 180_000);
  }
});

describe('chaos: dependencies away', () => {
  scenario(
    'worker killed: hold endpoints 503 within the bound, no worker polling, the same key later gets the real outcome',
    workerKilled,
    180_000,
  );
  scenario(
    'Temporal killed, or never reached: hold endpoints 503 within 5 s, /readyz not ready',
    temporalDown,
    120_000,
  );
});

describe('chaos: SIGKILL at every step boundary, retry with the same key', () => {
  for (const s of STEPS) {
    for (const when of ['before', 'after'] as const) {
      scenario(`${s.activity}:${when}`, () => holdCase(s, when), 150_000);
    }
  }
});
