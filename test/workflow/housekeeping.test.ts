import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { ensureHousekeepingSchedule, HOUSEKEEPING_SCHEDULE_ID } from '../../worker/schedules';
import { housekeeping, housekeepingStatusQuery, type HousekeepingInput } from '../../workflows/housekeeping';
import { call, makeKey, type TestApi } from '../support/api';
import { triggerSchedule } from '../support/temporal';
import { killAllWorkers, spawnWorker, startInProcessWorker } from '../support/workers';
import { startStack, type Stack } from '../support/stack';

let stack: Stack;
let db: Stack['db'];
let pool: Pool;
let t: Stack['t'];
let api: TestApi;
let admin: string;

beforeAll(async () => {
  stack = await startStack();
  ({ db, pool, t, api } = stack);
  admin = await makeKey(pool, 'admin');
});
afterAll(async () => {
  await killAllWorkers();
  await stack.close();
});

/** A stored reply (or a claim) `ageDays` old, with a tag so each test counts only its own rows. */
async function seed(tag: string, n: number, ageDays: number, o: { inFlight?: 'live' | 'lapsed' } = {}) {
  const scopes = Array.from({ length: n }, (_, i) => `test:${tag}:${i}`);
  await pool.query(
    `INSERT INTO http_idempotency (scope, request_hash, state, owner, lease_until, response, created_at, updated_at)
     SELECT s, 'h', $2, gen_random_uuid(), now() + make_interval(secs => $3), $4, now() - make_interval(days => $5),
            now() - make_interval(days => $5)
       FROM unnest($1::text[]) s`,
    [
      scopes,
      o.inFlight ? 'in_flight' : 'done',
      o.inFlight === 'live' ? 60 : -60,
      o.inFlight ? null : JSON.stringify({ status: 201, body: {} }),
      ageDays,
    ],
  );
}
const left = async (tag: string) =>
  Number(
    (await pool.query<{ n: string }>(`SELECT count(*) n FROM http_idempotency WHERE scope LIKE $1`, [`test:${tag}:%`]))
      .rows[0]!.n,
  );

async function purge(input: HousekeepingInput, taskQueue = t.taskQueue) {
  const h = await t.client.workflow.start(housekeeping, {
    workflowId: `housekeeping:test:${randomUUID()}`,
    taskQueue,
    args: [input],
  });
  return h;
}

describe('housekeeping (real Temporal, Postgres)', () => {
  it('purges replies past the retention in batches over continue-as-new; keeps young ones, live claims and every ledger key', async () => {
    // Ledger traffic through the API: each grant leaves an HTTP reply and a ledger idempotency key.
    const customer = `hk-${randomUUID().slice(0, 8)}`;
    expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id: customer } })).status).toBe(201);
    const keys = Array.from({ length: 3 }, () => randomUUID());
    const grant = (key: string) =>
      call(api.url, 'POST', `/v1/customers/${customer}/grants`, {
        key: admin,
        json: { amount: '10', kind: 'promotional' },
        headers: { 'idempotency-key': key },
      });
    for (const k of keys) expect((await grant(k)).status).toBe(201);
    // All of it 40 days old, the ledger's keys too: a purge that touched them would break invariant 4.
    await pool.query(`UPDATE http_idempotency SET created_at = now() - interval '40 days'`);
    // The ledger's keys are append-only (a trigger) and the service role may not update them: aged
    // as the owner, triggers off, in one transaction.
    await db.owner.query(`BEGIN; SET LOCAL session_replication_role = replica;
      UPDATE idempotency_keys SET created_at = now() - interval '40 days'; COMMIT`);
    const ledgerKeys = (await pool.query(`SELECT count(*)::int n FROM idempotency_keys`)).rows[0].n as number;
    const transactions = (await pool.query(`SELECT count(*)::int n FROM ledger_transactions`)).rows[0].n as number;
    const oldHttp = (await pool.query(`SELECT count(*)::int n FROM http_idempotency`)).rows[0].n as number;

    await seed('old', 25, 40);
    await seed('lapsed', 2, 40, { inFlight: 'lapsed' });
    await seed('live', 2, 40, { inFlight: 'live' });
    await seed('young', 5, 29);
    await seed('fresh', 5, 0);

    // 10 rows a statement, one statement an activity, two activities a run: continue-as-new.
    const h = await purge({ retentionDays: 30, batchSize: 10, batchesPerActivity: 1, activitiesPerRun: 2 });
    const firstRunId = (await h.describe()).runId;
    const result = await h.result();
    expect(result.purged).toBe(25 + 2 + oldHttp);
    expect(await h.query(housekeepingStatusQuery)).toMatchObject({ phase: 'done', purged: result.purged });
    expect([
      await left('old'),
      await left('lapsed'),
      await left('live'),
      await left('young'),
      await left('fresh'),
    ]).toEqual([0, 0, 2, 5, 5]);
    expect((await h.describe()).runId).not.toBe(firstRunId);

    // Nothing the ledger or reconciliation needs is gone.
    expect((await pool.query(`SELECT count(*)::int n FROM idempotency_keys`)).rows[0].n).toBe(ledgerKeys);
    expect(await findViolations(pool)).toEqual([]);
    // A client retrying a purged Idempotency-Key: its reply is gone, but the ledger key dedupes.
    const again = await grant(keys[0]!);
    expect(again.status).toBe(201);
    expect((await pool.query(`SELECT count(*)::int n FROM ledger_transactions`)).rows[0].n).toBe(transactions);
    expect(await findViolations(pool)).toEqual([]);

    // The first run's history (continued as new) replays with today's workflow code.
    const first = await t.client.workflow.getHandle(h.workflowId, firstRunId).fetchHistory();
    expect(first.events!.some((e) => e.workflowExecutionContinuedAsNewEventAttributes)).toBe(true);
    await Worker.runReplayHistory(
      { workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! } },
      first,
      h.workflowId,
    );
    const last = await h.fetchHistory();
    await Worker.runReplayHistory(
      { workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! } },
      last,
      h.workflowId,
    );
  }, 60_000);

  it('never purges anything younger than 7 days, whatever retention the workflow is given', async () => {
    await seed('floor', 3, 3);
    await seed('floor-old', 3, 8);
    const r = await (await purge({ retentionDays: 1 })).result();
    expect(r.purged).toBeGreaterThanOrEqual(3); // rows older than 7 days left by the first test too
    expect([await left('floor'), await left('floor-old')]).toEqual([3, 0]);
  }, 30_000);

  it('the schedule is upserted once, updated on a new retention, and a triggered run finishes', async () => {
    const scheduleId = `housekeeping-${t.taskQueue}`;
    const opts = { scheduleId, cron: '30 3 * * *', retentionDays: 30 };
    await ensureHousekeepingSchedule(t.client, t.taskQueue, opts);
    await ensureHousekeepingSchedule(t.client, t.taskQueue, opts);
    const handle = t.client.schedule.getHandle(scheduleId);
    try {
      const ids: string[] = [];
      for await (const s of t.client.schedule.list()) if (s.scheduleId === scheduleId) ids.push(s.scheduleId);
      expect(ids).toHaveLength(1);
      const before = await handle.describe();
      expect(before.action).toMatchObject({ taskQueue: t.taskQueue, args: [{ retentionDays: 30 }] });
      // Unchanged settings: the second start did not update it either.
      expect(before.info.lastUpdatedAt).toBeUndefined();

      await ensureHousekeepingSchedule(t.client, t.taskQueue, { ...opts, retentionDays: 45 });
      const after = await handle.describe();
      expect(after.action).toMatchObject({ args: [{ retentionDays: 45 }], memo: { retentionDays: 45 } });

      await seed('scheduled', 4, 50);
      const workflowId = await triggerSchedule(handle);
      expect(workflowId).toMatch(/^housekeeping-/);
      await t.client.workflow.getHandle(workflowId).result();
      expect(await left('scheduled')).toBe(0);
    } finally {
      await handle.delete();
    }
  }, 30_000);

  it('a worker killed between batches: a restarted worker finishes, nothing kept is harmed; the worker start made the schedule', async () => {
    const taskQueue = `housekeeping-kill-${randomUUID().slice(0, 8)}`;
    await seed('kill-old', 35, 60);
    await seed('kill-young', 5, 10);
    await seed('kill-live', 2, 60, { inFlight: 'live' });
    // The real worker process dies right after its first batch committed, before Temporal hears of it.
    const crashing = spawnWorker({
      databaseUrl: db.url,
      temporalAddress: t.address,
      taskQueue,
      crash: 'purgeIdempotencyRecords:after',
    });
    await crashing.ready;
    // Its start upserted the production schedule (once, however many workers start).
    const s = await t.client.schedule.getHandle(HOUSEKEEPING_SCHEDULE_ID).describe();
    expect(s.action).toMatchObject({ workflowId: 'housekeeping', args: [{ retentionDays: 30 }] });
    const h = await purge({ retentionDays: 30, batchSize: 10, batchesPerActivity: 1 }, taskQueue);
    expect(await crashing.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(await left('kill-old')).toBeLessThan(35); // the first batch was deleted
    expect(await left('kill-old')).toBeGreaterThan(0);

    const native = await NativeConnection.connect({ address: t.address });
    const connection = await Connection.connect({ address: t.address });
    const w = await startInProcessWorker({
      connection: native,
      client: new Client({ connection }),
      taskQueue,
      pool,
    });
    try {
      const r = await h.result();
      expect(r.purged).toBeGreaterThan(0);
      expect([await left('kill-old'), await left('kill-young'), await left('kill-live')]).toEqual([0, 5, 2]);
      expect(await findViolations(pool)).toEqual([]);
    } finally {
      await w.stop();
      await connection.close();
      await native.close();
    }
  }, 90_000);
});
