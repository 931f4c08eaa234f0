import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createPool } from '../db/pool';
import { createCustomer } from '../ledger/customers';
import { requestHash, sha256 } from '../lib/hash';
import { fmt, rssMb, startApiProcess, stats } from './lib';
import { openSse, type SseStream } from './sse-client';
import { benchDatabase } from './setup';

/**
 * bench/stream: STREAMS concurrent live-balance streams (SSE) on one API process. HOT_SHARE of
 * them watch one customer whose usage is debited CHANGES times (RATE per second, each its own
 * POST /v1/events) while other customers without streams are debited too; the rest watch other
 * customers, who must receive nothing but their first event. Latency: POST sent → event received,
 * per stream and change. Reference, same run, interleaved: a bare NOTIFY on its own connection →
 * a bare LISTEN client in this process (what Postgres' notification path costs alone). Memory: the
 * API process's RSS before and after opening the streams, per stream.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const PG_PORT = Number(process.env.BENCH_PG_PORT ?? 55511);
const API_PORT = Number(process.env.BENCH_API_PORT ?? 39331);
const STREAMS = Number(process.env.BENCH_STREAMS ?? 2000);
const HOT_SHARE = 0.5;
const CHANGES = Number(process.env.BENCH_CHANGES ?? 30);
const RATE = Number(process.env.BENCH_RATE ?? 5);
const COLD = 100; // customers the cold streams watch
const BACKGROUND = 50; // debited customers no stream watches
const ADMIN_KEY = `bench_admin_${randomUUID()}`;
const phase = (name: string) => console.error(`${new Date().toISOString()} bench/stream: ${name}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function openFilesLimit(): string {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  return line?.split(/\s{2,}/)[1] ?? '?';
}

async function main(): Promise<void> {
  const limit = Number(openFilesLimit());
  if (limit < STREAMS + 500)
    throw new Error(`ulimit -n is ${limit}: ${STREAMS} streams need more (raise it: ulimit -n ${STREAMS * 2})`);
  const url = await benchDatabase('stream', 'pg-stream', PG_PORT);
  const pool = createPool(url, 8);
  const ids = { hot: 'hot', cold: Array.from({ length: COLD }, (_, i) => `cold-${i}`) };
  const background = Array.from({ length: BACKGROUND }, (_, i) => `bg-${i}`);
  for (const id of [ids.hot, ...ids.cold, ...background]) await createCustomer(pool, { id }, requestHash({ id }));
  await pool.query(`INSERT INTO api_keys (id, key_hash, role) VALUES ('bench', $1, 'admin')`, [sha256(ADMIN_KEY)]);

  const api = await startApiProcess(
    {
      DATABASE_URL: url,
      TEMPORAL_ADDRESS: '127.0.0.1:1', // not needed: no workflow is involved
      CREDITFLOW_MODE: 'production',
      BALANCE_STREAM_MAX: String(STREAMS + 100),
      PORTAL_TOKEN_SECRET: 'bench-secret-0123456789abcdef0123456789',
    },
    API_PORT,
  );
  const base = `http://127.0.0.1:${API_PORT}`;
  const post = async (p: string, json: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(base + p, {
      method: p.endsWith('rate-cards/default') ? 'PUT' : 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(json),
    });
    if (res.status >= 300) throw new Error(`${p}: ${res.status} ${await res.text()}`);
  };
  await post('/v1/rate-cards/default', { rules: [{ meter: 'tokens', credits: '1', per: 1000 }] });
  for (const id of [ids.hot, ...ids.cold, ...background])
    await post(`/v1/customers/${id}/grants`, { amount: '1000000', kind: 'purchased' }, { 'idempotency-key': id });

  phase(`warming up; ulimit -n ${openFilesLimit()}`);
  for (let i = 0; i < 200; i++)
    await fetch(`${base}/v1/customers/hot/balance`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  await sleep(1000);
  const rssBefore = rssMb(api.pid!);

  phase(`opening ${STREAMS} streams`);
  const hotCount = Math.round(STREAMS * HOT_SHARE);
  const opened = performance.now();
  const streams: { id: string; s: SseStream }[] = [];
  for (let i = 0; i < STREAMS; i += 100) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(100, STREAMS - i) }, async (_, k) => {
        const id = i + k < hotCount ? ids.hot : ids.cold[(i + k) % COLD]!;
        return {
          id,
          s: await openSse(`${base}/v1/customers/${id}/balance/stream`, { authorization: `Bearer ${ADMIN_KEY}` }),
        };
      }),
    );
    streams.push(...batch);
  }
  const refused = streams.filter((x) => x.s.status !== 200).length;
  if (refused) throw new Error(`${refused} streams refused`);
  while (streams.some((x) => x.s.events.length === 0)) await sleep(50);
  const openSeconds = (performance.now() - opened) / 1000;
  await sleep(2000);
  const rssAfter = rssMb(api.pid!);

  // The reference: a bare LISTEN client here, NOTIFY from its own connection.
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  await listener.query('LISTEN bench_reference');
  const bare = new Map<string, number>();
  listener.on('notification', (n) => bare.set(n.payload ?? '', performance.now()));
  const notifier = new pg.Client({ connectionString: url });
  await notifier.connect();

  phase(`${CHANGES} usage debits of the hot customer at ${RATE}/s, background usage on ${BACKGROUND} others`);
  let stopBackground = false;
  const backgroundLoad = (async () => {
    let n = 0;
    while (!stopBackground) {
      const events = background.map((customerId) => ({
        id: `bg-${n++}`,
        customerId,
        meter: 'tokens',
        quantity: '1000',
      }));
      await post('/v1/events', { events });
      await sleep(100);
    }
  })();
  const sent: number[] = [];
  const bareSent: number[] = [];
  for (let i = 1; i <= CHANGES; i++) {
    const t0 = performance.now();
    sent.push(t0);
    await post('/v1/events', { events: [{ id: `hot-${i}`, customerId: ids.hot, meter: 'tokens', quantity: '1000' }] });
    bareSent.push(performance.now());
    await notifier.query(`NOTIFY bench_reference, '${i}'`);
    await sleep(Math.max(0, 1000 / RATE - (performance.now() - t0)));
  }
  await sleep(3000);
  stopBackground = true;
  await backgroundLoad;

  const latencies: number[] = [];
  let missing = 0;
  for (const { id, s } of streams) {
    if (id !== ids.hot) continue;
    for (let i = 1; i <= CHANGES; i++) {
      const want = String(1_000_000 - i);
      const e = s.events.find((x) => (JSON.parse(x.data) as { available: string }).available === want);
      if (e) latencies.push(e.at - sent[i - 1]!);
      else missing++;
    }
  }
  const leaked = streams.filter(({ id, s }) => id !== ids.hot && s.events.length !== 1).length;
  const reference = Array.from({ length: CHANGES }, (_, i) => bare.get(String(i + 1))! - bareSent[i]!);
  const l = stats(latencies);
  const r = stats(reference);
  console.log(`
bench/stream — ${STREAMS} SSE streams on one API process (${hotCount} on the debited customer, ${STREAMS - hotCount} on ${COLD} others)
  opening all streams           ${fmt(openSeconds, 2)} s
  API RSS                       ${fmt(rssBefore)} MB before → ${fmt(rssAfter)} MB with the streams open: ${fmt(((rssAfter - rssBefore) * 1024) / STREAMS, 1)} KB per stream
  change → event (POST sent → event at each hot stream, ${CHANGES} changes × ${hotCount} streams = ${l.n} samples)
    p50 ${fmt(l.p50)} ms   p99 ${fmt(l.p99)} ms   max ${fmt(l.max)} ms      goal: p99 < 1000 ms → ${l.p99 < 1000 ? 'met' : 'NOT met'}
  reference: bare NOTIFY → LISTEN in this process (same run, interleaved)
    p50 ${fmt(r.p50, 2)} ms   p99 ${fmt(r.p99, 2)} ms
  events missed by hot streams  ${missing}
  cold streams that got more than their first event: ${leaked} (must be 0)
`);
  streams.forEach(({ s }) => s.close());
  await listener.end();
  await notifier.end();
  await pool.end();
  api.kill('SIGTERM');
  execFileSync('bash', [path.join(ROOT, 'scripts/pg.sh'), 'stop', path.join(ROOT, '.data/bench/pg-stream')], {
    stdio: 'inherit',
  });
  if (missing || leaked || l.p99 >= 1000) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
