import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { createPool } from '../db/pool';
import { reconcile } from '../workflows/reconcile';
import { connectivityCheck } from '../workflows/connectivity';
import { clusterCpuSeconds, fmt, ownChild, postmasterPid, rssMb } from './lib';
import { benchDatabase, benchTemporal } from './setup';

/**
 * bench/reconcile: one reconciliation over WALLETS wallets and 20 entries each (2 million at the
 * default 100,000), beside the bare aggregate every balance check needs, measured in the same run
 * on the same database: `SELECT customer_id, account, sum(amount) FROM ledger_entries GROUP BY 1, 2`.
 * Target: reconciliation ≤ 3× the bare aggregate. Reports the worker process's peak RSS.
 * Beside wall time it reports the CPU seconds each side cost this cluster's Postgres (and the
 * worker): on a shared, loaded machine that ratio is the steadier of the two.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const PG_PORT = Number(process.env.BENCH_PG_PORT ?? 55512);
const T_PORT = Number(process.env.BENCH_TEMPORAL_PORT ?? 39312);
const WALLETS = Number(process.env.BENCH_WALLETS ?? 100_000);
const TASK_QUEUE = 'bench-reconcile';
const PAGE_SIZE = Number(process.env.BENCH_PAGE_SIZE ?? 5000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const phase = (name: string) => console.error(`${new Date().toISOString()} bench/reconcile: ${name}`);

/** A consistent ledger in bulk: per wallet one grant (2 entries) and 9 one-credit debits (18). */
const SEED = `
  SET session_replication_role = replica; -- bulk load: the data is balanced by construction
  INSERT INTO customers (id, request_hash) SELECT 'c' || lpad(i::text, 7, '0'), 'x' FROM generate_series(1, $1) i;
  INSERT INTO wallets (customer_id, available) SELECT 'c' || lpad(i::text, 7, '0'), 991000000 FROM generate_series(1, $1) i;
  INSERT INTO credit_lots (id, customer_id, kind, priority, original, remaining, effective_at)
    SELECT md5('lot' || i)::uuid, 'c' || lpad(i::text, 7, '0'), 'promotional', 0, 1000000000, 991000000, now() - interval '1 day'
      FROM generate_series(1, $1) i;
  INSERT INTO ledger_transactions (id, customer_id, type, idempotency_key)
    SELECT md5('t' || i || ':' || j)::uuid, 'c' || lpad(i::text, 7, '0'), CASE WHEN j = 0 THEN 'grant' ELSE 'adjustment' END,
           't' || i || ':' || j
      FROM generate_series(1, $1) i, generate_series(0, 9) j;
  INSERT INTO idempotency_keys (customer_id, key, request_hash, result)
    SELECT 'c' || lpad(i::text, 7, '0'), 't' || i || ':' || j, 'x', '{}' FROM generate_series(1, $1) i, generate_series(0, 9) j;
  INSERT INTO ledger_entries (transaction_id, customer_id, account, lot_id, amount)
    SELECT md5('t' || i || ':' || j)::uuid, 'c' || lpad(i::text, 7, '0'), e.account,
           CASE WHEN e.account = 'available' THEN md5('lot' || i)::uuid END,
           CASE WHEN j = 0 THEN e.sign * 1000000000 ELSE -e.sign * 1000000 END
      FROM generate_series(1, $1) i, generate_series(0, 9) j,
           LATERAL (VALUES ('available', 1), (CASE WHEN j = 0 THEN 'issued:promotional' ELSE 'consumed' END, -1)) e(account, sign);
  SET session_replication_role = DEFAULT;`;

async function main(): Promise<void> {
  const url = await benchDatabase('reconcile', 'pg', PG_PORT);
  const pool = createPool(url, 4);
  const postmaster = postmasterPid(path.join(ROOT, '.data/bench/pg'));
  phase(`seeding ${fmt(WALLETS)} wallets, ${fmt(WALLETS * 20)} entries`);
  const c = await pool.connect();
  for (const stmt of SEED.split(';').filter((s) => s.trim())) await c.query(stmt.replaceAll('$1', String(WALLETS)));
  await c.query('VACUUM ANALYZE');
  c.release();

  const temporal = await benchTemporal(T_PORT, 'temporal.log');
  const worker = ownChild(
    spawn(process.execPath, ['dist/worker/main.js'], {
      env: {
        ...process.env,
        DATABASE_URL: url,
        TEMPORAL_ADDRESS: temporal.address,
        TEMPORAL_TASK_QUEUE: TASK_QUEUE,
        PAYMENT_GATEWAY: 'sandbox',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    }),
  );
  const client = new Client({ connection: await Connection.connect({ address: temporal.address }) });

  // The bare aggregate, twice (the first warms the cache as the reconciliation's pages will be).
  const bare: number[] = [];
  const bareCpu: number[] = [];
  for (let i = 0; i < 2; i++) {
    const c0 = clusterCpuSeconds(postmaster);
    const t0 = performance.now();
    await pool.query('SELECT customer_id, account, sum(amount) FROM ledger_entries GROUP BY 1, 2');
    bare.push((performance.now() - t0) / 1000);
    bareCpu.push(clusterCpuSeconds(postmaster) - c0);
  }

  // The worker bundles its workflows at start: wait until it has run one.
  await client.workflow.execute(connectivityCheck, { workflowId: `warm-${randomUUID()}`, taskQueue: TASK_QUEUE });
  phase('reconciling');
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMb(worker.pid!) || 0)), 200);
  const runId = randomUUID();
  const workerCpu = () => clusterCpuSeconds(worker.pid!); /* the worker and any child */
  const c0 = clusterCpuSeconds(postmaster);
  const w0 = workerCpu();
  const t0 = performance.now();
  const outcome = await client.workflow.execute(reconcile, {
    workflowId: `reconcile:bench:${runId}`,
    taskQueue: TASK_QUEUE,
    args: [{ runId, pageSize: PAGE_SIZE, concurrency: CONCURRENCY }],
  });
  const seconds = (performance.now() - t0) / 1000;
  const pgCpu = clusterCpuSeconds(postmaster) - c0;
  const wCpu = workerCpu() - w0;
  clearInterval(sampler);
  const bareBest = Math.min(...bare);
  const bareCpuBest = Math.min(...bareCpu);
  console.log(
    JSON.stringify(
      {
        wallets: WALLETS,
        pageSize: PAGE_SIZE,
        concurrency: CONCURRENCY,
        entries: WALLETS * 20,
        outcome,
        reconcileSeconds: Number(seconds.toFixed(2)),
        bareGroupBySeconds: bare.map((s) => Number(s.toFixed(2))),
        ratio: Number((seconds / bareBest).toFixed(2)),
        postgresCpuSeconds: {
          reconcile: Number(pgCpu.toFixed(2)),
          bareGroupBy: bareCpu.map((s) => Number(s.toFixed(2))),
        },
        cpuRatio: Number((pgCpu / bareCpuBest).toFixed(2)),
        workerCpuSeconds: Number(wCpu.toFixed(2)),
        target: '≤ 3×',
        workerPeakRssMb: Number(peakRss.toFixed(0)),
      },
      null,
      2,
    ),
  );
  worker.kill('SIGTERM');
  await pool.end();
  await temporal.stop();
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
