import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createPool } from '../db/pool';
import { createCustomer } from '../ledger/customers';
import { Ledger } from '../ledger/ledger';
import { requestHash, sha256 } from '../lib/hash';
import { createDatabaseIfMissing, migrate } from '../lib/migrate';
import { fairReference, oldReference } from './ingest-reference';
import { kafkaBench } from './ingest-kafka';
import {
  closedLoop,
  clusterCpuSeconds,
  cpuSeconds,
  fmt,
  openLoop,
  postJson,
  postmasterPid,
  rssMb,
  serverCounts,
  startApiProcess,
  stats,
} from './lib';

/**
 * bench/ingest: sustained usage-event ingestion through the real HTTP API into real Postgres,
 * against a reference measured in the same run on the same cluster: bare multi-row
 * INSERT … ON CONFLICT DO NOTHING of the same rows into a table constrained like usage_events, with
 * the subject's client concurrency, pool size and duration (see ingest-reference.ts).
 */
const ROOT = path.resolve(__dirname, '..', '..');
const PG_PORT = Number(process.env.BENCH_PG_PORT ?? 55499);
const API_PORT = Number(process.env.BENCH_API_PORT ?? 39301);
const KAFKA_PORT = Number(process.env.BENCH_KAFKA_PORT ?? 39392); // and the two ports after it
const SCALE = Number(process.env.BENCH_SCALE ?? 1); // seconds multiplier
const CUSTOMERS = 10_000;
const BATCH = 1000;
const BATCH_CLIENTS = Number(process.env.BENCH_BATCH_CLIENTS ?? 4);
const SINGLE_CLIENTS = 32;
const API_POOL_SIZE = 20;
const BATCHED_SECONDS = 60 * SCALE;
const OLD_REFERENCE = process.env.BENCH_OLD_REFERENCE === '1';
const phase = (name: string) => console.error(`${new Date().toISOString()} bench/ingest: ${name}`);
const ADMIN_KEY = `bench_admin_${randomUUID()}`;
const BENCH_PG_SETTINGS = '-c shared_buffers=1GB -c max_wal_size=4GB -c checkpoint_timeout=15min';

const METERS = [
  { meter: 'llm.input_tokens', dim: 'model', values: ['small', 'large', 'mid'] },
  { meter: 'llm.output_tokens', dim: 'model', values: ['small', 'large', 'mid'] },
  { meter: 'gpu.seconds', dim: 'gpu', values: ['a10g', 'a100', 'h100'] },
  { meter: 'images', dim: 'size', values: ['512', '1024', '2048'] },
];
const CARD = {
  effectiveFrom: '2020-01-01T00:00:00Z',
  rules: [
    { meter: 'llm.input_tokens', credits: '1', per: 1000 },
    { meter: 'llm.output_tokens', credits: '2', per: 1000 },
    { meter: 'llm.output_tokens', dimensions: { model: 'large' }, credits: '6', per: 1000 },
    { meter: 'gpu.seconds', dimensions: { gpu: '*' }, credits: '0.05' },
    { meter: 'images', dimensions: { size: '*' }, credits: '10' },
  ],
};

let seq = 0;
const run = randomUUID().slice(0, 8);
function event() {
  const m = METERS[seq % METERS.length]!;
  const n = seq++;
  return {
    id: `${run}-${n}`,
    customerId: `c${(n * 7919) % CUSTOMERS}`,
    meter: m.meter,
    quantity: String(1 + (n % 5000)),
    dimensions: { [m.dim]: m.values[n % m.values.length]! },
  };
}

async function main(): Promise<void> {
  mkdirSync(path.join(ROOT, '.data', 'bench'), { recursive: true });
  // The bench's own cluster, restarted with production-like memory and WAL settings (durability
  // unchanged: fsync and synchronous_commit stay on). The reference runs on the same settings.
  const pgDir = path.join(ROOT, '.data/bench/pg');
  execFileSync('bash', [path.join(ROOT, 'scripts/pg.sh'), 'stop', pgDir], { stdio: 'inherit' });
  execFileSync('bash', [path.join(ROOT, 'scripts/pg.sh'), 'start', pgDir, String(PG_PORT)], {
    stdio: 'inherit',
    env: { ...process.env, PG_EXTRA_OPTS: BENCH_PG_SETTINGS },
  });
  const dbName = `bench_${Date.now()}`;
  const url = `postgres://postgres@127.0.0.1:${PG_PORT}/${dbName}`;
  await createDatabaseIfMissing(url);
  await migrate(url);
  const pool = createPool(url, 16);
  const settings = await pool.query<{ name: string; setting: string }>(
    `SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_wal_size')`,
  );
  console.log(`postgres: ${settings.rows.map((r) => `${r.name}=${r.setting}`).join(' ')}`);

  // Fixture: 10,000 customers with credits, one rate card, an admin key.
  const ledger = new Ledger(pool);
  const t0 = performance.now();
  for (let i = 0; i < CUSTOMERS; i += 100) {
    await Promise.all(
      Array.from({ length: 100 }, async (_, k) => {
        const id = `c${i + k}`;
        await createCustomer(pool, { id }, requestHash({ id }));
        await ledger.grant(
          { customerId: id, key: `bench-grant:${id}`, requestHash: 'bench' },
          { amount: 10_000_000n * 1_000_000n, kind: 'purchased' },
        );
      }),
    );
  }
  await pool.query(`INSERT INTO api_keys (id, key_hash, role) VALUES ('bench', $1, 'admin')`, [sha256(ADMIN_KEY)]);
  console.log(`fixture: ${CUSTOMERS} customers granted in ${fmt((performance.now() - t0) / 1000)} s`);
  // Start every phase from the same settled state: statistics fresh, no checkpoint pending.
  await pool.query('VACUUM ANALYZE');
  await pool.query('CHECKPOINT');

  const api = await startApiProcess(
    {
      DATABASE_URL: url,
      CREDITFLOW_ADMIN_KEY: ADMIN_KEY,
      TEMPORAL_ADDRESS: '127.0.0.1:1',
      DATABASE_POOL_SIZE: String(API_POOL_SIZE),
    },
    API_PORT,
  );
  const base = `http://127.0.0.1:${API_PORT}`;
  const headers = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };
  const put = await fetch(`${base}/v1/rate-cards/default`, { method: 'PUT', headers, body: JSON.stringify(CARD) });
  if (put.status !== 201) throw new Error(`rate card: ${put.status}`);
  const rss: { t: number; mb: number }[] = [];
  const apiStart = performance.now();
  const sampler = setInterval(() => rss.push({ t: (performance.now() - apiStart) / 1000, mb: rssMb(api.pid!) }), 1000);

  const post = async (events: unknown[]) => {
    const res = await fetch(`${base}/v1/events`, { method: 'POST', headers, body: JSON.stringify({ events }) });
    const body = (await res.json()) as { results: { status: string }[] };
    if (res.status !== 200 || body.results.some((r) => r.status !== 'accepted')) {
      throw new Error(`ingest failed: ${res.status} ${JSON.stringify(body).slice(0, 300)}`);
    }
  };

  // Authorize at 500 requests/s, alone and under a batched-ingestion load.
  const authorize = async () => {
    const c = `c${Math.floor(Math.random() * CUSTOMERS)}`;
    const status = await postJson(`${base}/v1/customers/${c}/authorize`, headers, '{"amount":"5"}');
    if (status !== 200) throw new Error(`authorize ${status}`);
  };
  // Authorize first, on a quiet system (after a warm-up), then again later under ingestion load.
  phase('authorize alone');
  await openLoop(200, 2, authorize);
  const route = '/v1/customers/:id/authorize';
  const srv0 = await serverCounts(base, route, '0.005');
  const aloneRun = await openLoop(500, 15 * SCALE, authorize);
  const srv1 = await serverCounts(base, route, '0.005');
  const authAlone = stats(aloneRun.latencies);
  const authLag = stats(aloneRun.lags);
  const serverUnder5 = (100 * (srv1.under - srv0.under)) / Math.max(1, srv1.total - srv0.total);

  // References on the same cluster, before the subject: the old one only when asked for, to print
  // old and new side by side once.
  const pgPid = postmasterPid(pgDir);
  const pgCpu = () => clusterCpuSeconds(pgPid);
  phase('reference');
  const old = OLD_REFERENCE ? await oldReference(url, 15 * SCALE, BATCH, event) : null;
  const ref = await fairReference({
    url,
    clients: BATCH_CLIENTS,
    poolSize: API_POOL_SIZE,
    seconds: BATCHED_SECONDS,
    batch: BATCH,
    next: event,
    pgCpu,
  });
  const refRate = ref.rate;
  phase(
    `reference: ${ref.prebuilt} rows prebuilt; load generator peak RSS ${fmt(process.resourceUsage().maxRSS / 1024, 0)} MB`,
  );
  await pool.query('CHECKPOINT'); // the reference's writes are not flushed on the subject's time

  phase('batched');
  // Warm-up, then batched ingestion through the API.
  await post(Array.from({ length: BATCH }, event));
  const cpu = () => ({
    api: cpuSeconds((_c, pid) => pid === api.pid),
    pg: pgCpu(),
    bench: cpuSeconds((_c, pid) => pid === process.pid),
  });
  const cpu0 = cpu();
  const steadyFrom = (performance.now() - apiStart) / 1000;
  const batched = await closedLoop(BATCH_CLIENTS, BATCHED_SECONDS, () => post(Array.from({ length: BATCH }, event)));
  const batchedRate = (batched.latencies.length * BATCH) / batched.elapsed;
  const cpu1 = cpu();
  const perK = (k: 'api' | 'pg' | 'bench') => ((cpu1[k] - cpu0[k]) / (batched.latencies.length * BATCH)) * 1e6;
  const bs = stats(batched.latencies);

  phase('unbatched');
  // Unbatched: one event per request, 32 clients.
  const single = await closedLoop(SINGLE_CLIENTS, 30 * SCALE, () => post([event()]));
  const singleRate = single.latencies.length / single.elapsed;
  const ss = stats(single.latencies);

  phase('authorize under load');
  let loadOn = true;
  const background = (async () => {
    while (loadOn) await post(Array.from({ length: BATCH }, event));
  })();
  const authLoaded = stats((await openLoop(500, 15 * SCALE, authorize)).latencies);
  loadOn = false;
  await background;

  clearInterval(sampler);
  api.kill('SIGTERM');

  phase('kafka');
  await pool.query('CHECKPOINT');
  const kafka = await kafkaBench({
    url,
    pool,
    events: 200_000 * SCALE,
    steadySeconds: 30 * SCALE,
    clients: BATCH_CLIENTS,
    batch: BATCH,
    next: event,
    port: KAFKA_PORT,
    phase,
    pgCpu,
  });
  const events = await pool.query<{ n: string }>(`SELECT count(*) n FROM usage_events`);
  const violations = await pool.query<{ n: string }>(
    `SELECT count(*) n FROM wallets w LEFT JOIN (SELECT customer_id, sum(amount) s FROM ledger_entries WHERE account = 'available' GROUP BY customer_id) e
       ON e.customer_id = w.customer_id WHERE w.available <> COALESCE(e.s, 0)`,
  );
  await pool.end();

  const warm = rss.filter((s) => s.t >= steadyFrom + 5); // steady load: batched, unbatched, loaded authorize
  const third = Math.max(1, Math.floor(warm.length / 3));
  const avg = (xs: typeof rss) => xs.reduce((s, x) => s + x.mb, 0) / xs.length;
  const first = avg(warm.slice(0, third));
  const last = avg(warm.slice(-third));
  console.log(`
bench/ingest — ${CUSTOMERS} customers, ${METERS.length} meters, batches of ${BATCH}
${
  old
    ? `  old ref.   1 connection, batches built in the timed loop, no checks/FKs, ${fmt(15 * SCALE)} s : ${fmt(old.rate, 0)} rows/s (batched = ${fmt((100 * batchedRate) / old.rate)} %)\n`
    : ''
}  reference  bare INSERT … ON CONFLICT DO NOTHING, same checks/PK/index/FKs, ${BATCH_CLIENTS} clients, pool ${API_POOL_SIZE}, prebuilt batches, ${fmt(ref.seconds, 0)} s : ${fmt(refRate, 0)} rows/s
             Postgres CPU per row ${fmt(ref.pgCpuPerRow)} µs${ref.builtInLoop ? `; ${ref.builtInLoop} batches built in the timed loop (prebuilt ran out)` : ''}
  batched    ${BATCH_CLIENTS} clients × ${BATCH} events/request        : ${fmt(batchedRate, 0)} events/s = ${fmt((100 * batchedRate) / refRate)} % of reference (target ≥ 25 %)
             batch latency p50 ${fmt(bs.p50)} ms, p99 ${fmt(bs.p99)} ms (${bs.n} batches)
             CPU per event: API ${fmt(perK('api'))} µs, Postgres ${fmt(perK('pg'))} µs, load generator ${fmt(perK('bench'))} µs
  unbatched  ${SINGLE_CLIENTS} clients × 1 event/request           : ${fmt(singleRate, 0)} events/s = ${fmt((100 * singleRate) / refRate, 2)} % of reference (target ≥ 1,500 events/s)
             request latency p50 ${fmt(ss.p50)} ms, p99 ${fmt(ss.p99)} ms
  authorize  500 req/s open loop, alone                : p50 ${fmt(authAlone.p50, 2)} ms, p99 ${fmt(authAlone.p99, 2)} ms (target p99 ≤ 5 ms)
             server-side (/metrics): ${fmt(serverUnder5, 2)} % of requests ≤ 5 ms; load-generator send lag p99 ${fmt(authLag.p99, 2)} ms
             500 req/s under batched ingestion          : p50 ${fmt(authLoaded.p50, 2)} ms, p99 ${fmt(authLoaded.p99, 2)} ms
  kafka      ${kafka.partitions} partitions, 1 consumer process (pool ${API_POOL_SIZE}), ${BATCH_CLIENTS} producers × ${BATCH} events, acks=all
             ${fmt(200_000 * SCALE, 0)} events as fast as produced   : ${fmt(kafka.maxRate, 0)} events/s produce → ledger = ${fmt((100 * kafka.maxRate) / refRate)} % of reference (batched HTTP: ${fmt((100 * batchedRate) / refRate)} %)
             CPU per event: consumer ${fmt(kafka.cpu.consumer)} µs, Postgres ${fmt(kafka.cpu.pg)} µs, broker ${fmt(kafka.cpu.broker)} µs
             produce → debited while a backlog builds: p50 ${fmt(kafka.maxLatency.p50, 0)} ms, p99 ${fmt(kafka.maxLatency.p99, 0)} ms
             open loop at 80 % = ${fmt(kafka.steadyRate, 0)} events/s, ${fmt(30 * SCALE, 0)} s: produce → debited p50 ${fmt(kafka.steadyLatency.p50, 0)} ms, p99 ${fmt(kafka.steadyLatency.p99, 0)} ms (${kafka.steadyLatency.n} events)
             consumer lag (its /metrics, ${kafka.lag.samples} samples): max ${fmt(kafka.lag.max, 0)} records, first third avg ${fmt(kafka.lag.firstThird, 0)}, last third avg ${fmt(kafka.lag.lastThird, 0)}
             (debited = the row's received_at, its transaction's start: the commit itself is not counted)
  memory     API RSS over ${fmt(rss.at(-1)?.t ?? 0, 0)} s: first third ${fmt(first)} MB, last third ${fmt(last)} MB (${fmt(((last - first) / first) * 100)} %), max ${fmt(Math.max(...rss.map((s) => s.mb)))} MB
  check      ${events.rows[0]!.n} events stored; wallets whose cached balance ≠ entries: ${violations.rows[0]!.n}
`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
