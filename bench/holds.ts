import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createPool } from '../db/pool';
import { createCustomer } from '../ledger/customers';
import { Ledger } from '../ledger/ledger';
import { requestHash, sha256 } from '../lib/hash';
import { closedLoop, fmt, openLoop, ownChild, startApiProcess, startReferenceWorker, stats } from './lib';
import { benchDatabase, benchTemporal } from './setup';

/**
 * bench/holds: hold → settle cycles per second through the HTTP API (reservation workflow,
 * update-with-start, two local ledger activities), against a reference measured in the same run on
 * the same Temporal server: a bare workflow with one no-op local activity, started and completed,
 * its worker in its own process like the subject's.
 */
const PG_PORT = Number(process.env.BENCH_PG_PORT ?? 55499);
const API_PORT = Number(process.env.BENCH_API_PORT ?? 39302);
const T_PORT = Number(process.env.BENCH_TEMPORAL_PORT ?? 39303);
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const CONCURRENCY = 8;
const CUSTOMERS = 100;
const ADMIN_KEY = `bench_admin_${randomUUID()}`;
const TASK_QUEUE = 'bench-holds';
const OLD_REFERENCE = process.env.BENCH_OLD_REFERENCE === '1';
const phase = (name: string) => console.error(`${new Date().toISOString()} bench/holds: ${name}`);

async function main(): Promise<void> {
  const url = await benchDatabase('holds', 'pg', PG_PORT);
  const pool = createPool(url, 8);
  const ledger = new Ledger(pool);
  for (let i = 0; i < CUSTOMERS; i++) {
    const id = `c${i}`;
    await createCustomer(pool, { id }, requestHash({ id }));
    await ledger.grant(
      { customerId: id, key: `g:${id}`, requestHash: 'g' },
      { amount: 1_000_000_000n * 1_000_000n, kind: 'purchased' },
    );
  }
  await pool.query(`INSERT INTO api_keys (id, key_hash, role) VALUES ('bench', $1, 'admin')`, [sha256(ADMIN_KEY)]);

  const temporal = await benchTemporal(T_PORT, 'temporal.log');
  const env = {
    DATABASE_URL: url,
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_TASK_QUEUE: TASK_QUEUE,
    LOG_LEVEL: 'warn',
  };
  const worker = ownChild(
    spawn(process.execPath, ['dist/worker/main.js'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'inherit', 'inherit'],
    }),
  );
  const api = await startApiProcess({ ...env, CREDITFLOW_ADMIN_KEY: ADMIN_KEY }, API_PORT);
  const base = `http://127.0.0.1:${API_PORT}`;
  const headers = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };

  // Like a real client: a 503 (Temporal or worker slow) is retried with the same key, bounded.
  let retried = 0;
  const send = async (path: string, key: string, body: unknown) => {
    for (let attempt = 1; ; attempt++) {
      const res = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { ...headers, 'idempotency-key': key },
        body: JSON.stringify(body),
      });
      const json = (await res.json()) as Record<string, unknown>;
      if (res.status !== 503 || attempt >= 5) return { status: res.status, json };
      retried++;
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  const cycle = async (placeLatencies?: number[]) => {
    const customerId = `c${Math.floor(Math.random() * CUSTOMERS)}`;
    const t0 = performance.now();
    const placed = await send('/v1/holds', randomUUID(), { customerId, amount: '10', ttlSeconds: 600 });
    placeLatencies?.push(performance.now() - t0);
    if (placed.status !== 201) throw new Error(`place ${placed.status} ${JSON.stringify(placed.json)}`);
    const settled = await send(`/v1/holds/${String(placed.json.holdId)}/settle`, randomUUID(), {
      customerId,
      amount: '7.5',
    });
    if (settled.status !== 200) throw new Error(`settle ${settled.status}`);
  };
  phase('warm-up');
  for (let i = 0; i < 20; i++) await cycle(); // warm-up (bundling, connections)

  // Reference on the same server, same concurrency: a bare workflow with one no-op local activity,
  // its worker in its own process. The old reference (normal activity, worker inside this
  // process) only when asked for, to print old and new side by side once.
  const conn = await Connection.connect({ address: temporal.address });
  const client = new Client({ connection: conn });
  const refRun = (workflow: string, taskQueue: string) => () =>
    client.workflow.execute(workflow, { taskQueue, workflowId: `ref-${randomUUID()}` });
  const measure = async (run: () => Promise<void>) => {
    for (let i = 0; i < 20; i++) await run();
    const r = await closedLoop(CONCURRENCY, 20 * SCALE, run);
    return r.latencies.length / r.elapsed;
  };
  let oldRate: number | null = null;
  if (OLD_REFERENCE) {
    phase('old reference');
    const nc = await NativeConnection.connect({ address: temporal.address });
    const refWorker = await Worker.create({
      connection: nc,
      taskQueue: 'bench-old-reference',
      workflowsPath: require.resolve('./reference-workflow'),
      activities: { noop: () => Promise.resolve() },
    });
    const refRunning = refWorker.run();
    oldRate = await measure(refRun('oldReferenceWorkflow', 'bench-old-reference'));
    refWorker.shutdown();
    await refRunning;
    await nc.close();
  }
  phase('reference');
  const refWorker = await startReferenceWorker({ ...env, TEMPORAL_TASK_QUEUE: 'bench-reference' });
  const refRate = await measure(refRun('referenceWorkflow', 'bench-reference'));
  refWorker.kill('SIGTERM');
  await once(refWorker, 'exit');

  phase('holds');
  const holds = await closedLoop(CONCURRENCY, 20 * SCALE, () => cycle());
  const holdRate = holds.latencies.length / holds.elapsed;

  const place: number[] = [];
  phase('placement');
  await openLoop(20, 30 * SCALE, () => cycle(place));
  const p = stats(place);

  const check = await pool.query<{ bad: string; active: string }>(
    `SELECT (SELECT count(*) FROM wallets w LEFT JOIN (SELECT customer_id, sum(amount) s FROM ledger_entries WHERE account = 'held' GROUP BY 1) e
               ON e.customer_id = w.customer_id WHERE w.held <> COALESCE(e.s, 0)) AS bad,
            (SELECT count(*) FROM holds WHERE status = 'active') AS active`,
  );
  api.kill('SIGTERM');
  worker.kill('SIGTERM');
  await conn.close();
  await temporal.stop();
  await pool.end();
  console.log(`
bench/holds — ${CONCURRENCY} concurrent clients, same Temporal dev server for both
${
  oldRate === null
    ? ''
    : `  old ref.   bare workflow + 1 no-op normal activity, worker in the load generator : ${fmt(oldRate)} workflows/s (holds = ${fmt((100 * holdRate) / oldRate)} %)\n`
}  reference  bare workflow + 1 no-op local activity, worker in its own process : ${fmt(refRate)} workflows/s
  holds      POST /v1/holds → POST …/settle (2 updates, 2 ledger steps) : ${fmt(holdRate)} cycles/s = ${fmt((100 * holdRate) / refRate)} % of reference (target ≥ 50 %)
  placement  POST /v1/holds at 20 holds/s (open loop)  : p50 ${fmt(p.p50)} ms, p99 ${fmt(p.p99)} ms (target p99 ≤ 100 ms, ${p.n} holds)
  check      wallets whose cached held ≠ entries: ${check.rows[0]!.bad}; holds left active: ${check.rows[0]!.active}; 503s retried with the same key: ${retried}
`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
