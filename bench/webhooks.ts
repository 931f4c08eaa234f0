import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { createPool, type Pool } from '../db/pool';
import { createCustomer } from '../ledger/customers';
import { requestHash, sha256 } from '../lib/hash';
import { fmt, openLoop, ownChild, postJson, startApiProcess, stats } from './lib';
import { benchDatabase, benchTemporal } from './setup';

/**
 * bench/webhooks: notifications written to the outbox at RATE per second (each its own committed
 * transaction, as the code paths that cause them write them) → delivered, signed, to a local
 * receiver by the worker process (one endpoint, its `webhooks:<id>` workflow and delivery loop).
 * Latency: the outbox row's created_at → the receiver has the whole request. The reference, in the
 * same run at the same rate, interleaved: a bare keep-alive HTTP POST to the same receiver, timed
 * from the moment it is sent to the same receive point.
 */
const PG_PORT = Number(process.env.BENCH_PG_PORT ?? 55510);
const API_PORT = Number(process.env.BENCH_API_PORT ?? 39322);
const T_PORT = Number(process.env.BENCH_TEMPORAL_PORT ?? 39323);
const RATE = Number(process.env.BENCH_RATE ?? 200); // notifications (and bare POSTs) per second
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const ADMIN_KEY = `bench_admin_${randomUUID()}`;
const BURST = Number(process.env.BENCH_BURST ?? 2000); // then this many in one transaction: capacity
/** Sub-millisecond wall-clock time (comparable with Postgres timestamps, which have microseconds). */
const now = () => performance.timeOrigin + performance.now();
const phase = (name: string) => console.error(`${new Date().toISOString()} bench/webhooks: ${name}`);

interface Receiver {
  url: string;
  /** webhook-id → receive time (ms since epoch), and how often each id came. */
  webhooks: Map<string, { at: number; count: number }>;
  bare: number[];
  badSignatures: number;
  secret: string | null;
  close: () => void;
}

async function startReceiver(): Promise<Receiver> {
  const r: Receiver = {
    url: '',
    webhooks: new Map(),
    bare: [],
    badSignatures: 0,
    secret: null,
    close: () => undefined,
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = now();
      const sent = req.headers['x-bench-sent'];
      if (typeof sent === 'string') r.bare.push(at - Number(sent));
      else {
        const id = String(req.headers['webhook-id']);
        try {
          new Webhook(r.secret!).verify(Buffer.concat(chunks).toString('utf8'), req.headers as Record<string, string>);
        } catch {
          r.badSignatures++;
        }
        const seen = r.webhooks.get(id);
        if (seen) seen.count++;
        else r.webhooks.set(id, { at, count: 1 });
      }
      res.writeHead(204).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  r.close = () => {
    server.closeAllConnections();
    server.close();
  };
  return r;
}

let seq = 0;
async function emit(pool: Pool): Promise<void> {
  const n = seq++;
  await pool.query(
    `INSERT INTO outbox_events (dedupe_key, type, customer_id, payload) VALUES ($1, 'balance.low', 'bench', $2)`,
    [`bench:${n}`, JSON.stringify({ threshold: '100', available: '99.5', n })],
  );
}

async function main(): Promise<void> {
  const url = await benchDatabase('webhooks', 'pg-webhooks', PG_PORT);
  const pool = createPool(url, 16);
  await createCustomer(pool, { id: 'bench' }, requestHash({ id: 'bench' }));
  await pool.query(`INSERT INTO api_keys (id, key_hash, role) VALUES ('bench', $1, 'admin')`, [sha256(ADMIN_KEY)]);

  const temporal = await benchTemporal(T_PORT, 'temporal-webhooks.log');
  const env = {
    DATABASE_URL: url,
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_TASK_QUEUE: 'bench-webhooks',
    CREDITFLOW_MODE: 'production',
    WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
    LOG_LEVEL: 'warn',
  };
  const worker = ownChild(
    spawn(process.execPath, ['dist/worker/main.js'], { env: { ...process.env, ...env }, stdio: 'inherit' }),
  );
  const api = await startApiProcess({ ...env, CREDITFLOW_ADMIN_KEY: ADMIN_KEY }, API_PORT);
  const rx = await startReceiver();
  const created = await fetch(`http://127.0.0.1:${API_PORT}/v1/webhook-endpoints`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ url: rx.url, types: ['balance.low'] }),
  });
  if (created.status !== 201) throw new Error(`endpoint ${created.status}: ${await created.text()}`);
  const endpoint = (await created.json()) as { id: string; secret: string };
  rx.secret = endpoint.secret;

  const bare = () =>
    postJson(rx.url, { 'x-bench-sent': String(now()) }, '{"id":"evt_bare","type":"balance.low"}').then(() => undefined);
  const drained = async (n: number, timeoutMs = 60_000) => {
    const until = Date.now() + timeoutMs;
    while (rx.webhooks.size < n && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    if (rx.webhooks.size < n) throw new Error(`only ${rx.webhooks.size} of ${n} notifications arrived`);
  };

  phase('warm-up (2 s, not counted)');
  let tick = 0;
  await openLoop(2 * RATE, 2, () => (tick++ % 2 === 0 ? emit(pool) : bare()));
  await drained(seq);
  const warmIds = seq;
  rx.bare.length = 0;

  phase(`${RATE}/s notifications and ${RATE}/s bare POSTs, interleaved, ${SECONDS} s`);
  const t0 = Date.now();
  const load = await openLoop(2 * RATE, SECONDS, () => (tick++ % 2 === 0 ? emit(pool) : bare()));
  await drained(seq);
  const last = Math.max(...[...rx.webhooks.values()].map((v) => v.at));
  const emitted = seq;

  const rows = await pool.query<{ id: string; at: Date }>(
    `SELECT id::text, created_at AS at FROM outbox_events o WHERE dedupe_key LIKE 'bench:%' ORDER BY o.id OFFSET $1`,
    [warmIds],
  );
  const lat = rows.rows.map((r) => rx.webhooks.get(`evt_${r.id}`)!.at - r.at.getTime());

  phase(`burst: ${BURST} notifications in one transaction`);
  const before = rx.webhooks.size;
  const b0 = now();
  await pool.query(
    `INSERT INTO outbox_events (dedupe_key, type, customer_id, payload)
     SELECT 'burst:' || n, 'balance.low', 'bench', jsonb_build_object('n', n) FROM generate_series(1, $1) n`,
    [BURST],
  );
  await drained(before + BURST);
  const burstSeconds = (Math.max(...[...rx.webhooks.values()].map((v) => v.at)) - b0) / 1000;
  await new Promise((r) => setTimeout(r, 500)); // the last attempts are logged just after their answer

  const check = await pool.query<{ delivered: string; attempts: string }>(
    `SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered') AS delivered,
            (SELECT count(*) FROM webhook_attempts) AS attempts`,
  );
  const duplicates = [...rx.webhooks.values()].filter((v) => v.count > 1).length;
  rx.close();
  api.kill('SIGTERM');
  worker.kill('SIGTERM');
  await temporal.stop();
  await pool.end();

  const w = stats(lat);
  const b = stats(rx.bare);
  const lag = stats(load.lags);
  const c = check.rows[0]!;
  console.log(`
bench/webhooks — ${RATE} notifications/s and ${RATE} bare POSTs/s to one local receiver, interleaved (open loop), ${SECONDS} s
  delivered   ${rows.rows.length} notifications in ${fmt((last - t0) / 1000, 2)} s: ${fmt(rows.rows.length / ((last - t0) / 1000))}/s
  capacity    a burst of ${BURST} in one transaction delivered in ${fmt(burstSeconds, 2)} s: ${fmt(BURST / burstSeconds)}/s (one endpoint, 4 in flight)
  webhooks    outbox commit (created_at) → received, signed: p50 ${fmt(w.p50, 2)} ms, p99 ${fmt(w.p99, 2)} ms, max ${fmt(w.max)} ms (target p99 ≤ 1000 ms)
  bare POST   sent → received: p50 ${fmt(b.p50, 2)} ms, p99 ${fmt(b.p99, 2)} ms, max ${fmt(b.max)} ms (${b.n})
  ratio       p99 ${fmt(w.p99 / b.p99, 1)} × bare POST, p50 ${fmt(w.p50 / b.p50, 1)} ×
  check       delivered ${c.delivered} of ${emitted + BURST}, attempts ${c.attempts}, duplicates ${duplicates}, bad signatures ${rx.badSignatures}; load generator lag p99 ${fmt(lag.p99)} ms
`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
