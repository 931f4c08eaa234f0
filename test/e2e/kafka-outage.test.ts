import net from 'node:net';
import type { Pool } from '../../db/pool';
import { findViolations } from '../../db/invariants';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { eventually } from '../support/eventually';
import { offsets, produce, spawnConsumer, startKafka, type TestKafka } from '../support/kafka';
import { killAllWorkers } from '../support/workers';
import { TEST_PG_PORT } from '../support/paths';
import { freePort } from '../support/ports';

/**
 * The database going away under the consumer: a TCP proxy in front of Postgres that the test cuts
 * (every connection dropped, new ones refused). A short outage: the consumer retries, commits
 * nothing meanwhile, and carries on. One longer than KAFKA_STORE_RETRY_MS: it exits, and a new
 * consumer replays. Either way every event is debited exactly once.
 */
jest.setTimeout(240_000);

let kafka: TestKafka;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let proxy: Awaited<ReturnType<typeof pgProxy>> | undefined;

/** A cuttable TCP proxy to the test cluster. */
async function pgProxy() {
  const sockets = new Set<net.Socket>();
  let cut = false;
  const server = net.createServer((client) => {
    if (cut) return void client.destroy();
    const upstream = net.connect(TEST_PG_PORT, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    port,
    cut: () => {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    restore: () => (cut = false),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

beforeAll(async () => {
  [kafka, db] = await Promise.all([startKafka(), freshDatabase()]);
  pool = db.pool;
  api = await startApi(pool);
  const admin = await makeKey(pool, 'admin');
  const card = { effectiveFrom: '2020-01-01T00:00:00Z', rules: [{ meter: 'units', credits: '1', per: 1 }] };
  expect((await call(api.url, 'PUT', '/v1/rate-cards/default', { key: admin, json: card })).status).toBe(201);
  for (let i = 0; i < 8; i++)
    expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id: `o${i}` } })).status).toBe(201);
});
afterAll(async () => {
  await killAllWorkers();
  await proxy?.close();
  await api?.close();
  await db?.drop();
  await kafka?.stop();
});

test('Postgres cut under the consumer: a short outage is retried, a long one ends the process and a new consumer replays; every event debited once', async () => {
  proxy = await pgProxy();
  const pg = proxy;
  const topic = 'usage-outage';
  const group = 'g-outage';
  const url = new URL(db.url);
  url.port = String(pg.port);
  const start = async () => {
    const c = spawnConsumer({
      databaseUrl: url.toString(),
      brokers: kafka.brokers,
      topic,
      groupId: group,
      metricsPort: await freePort(),
      env: { KAFKA_STORE_RETRY_MS: '15000', DATABASE_CONNECT_TIMEOUT_MS: '1000' },
    });
    await c.ready;
    return c;
  };
  let n = 0;
  const send = (count: number) =>
    produce(
      kafka.brokers,
      topic,
      Array.from({ length: count }, () => {
        const e = { id: `e${n}`, customerId: `o${n % 8}`, meter: 'units', quantity: '1' };
        n++;
        return { key: e.customerId, value: JSON.stringify(e) };
      }),
    );
  const stored = async () =>
    Number((await pool.query<{ n: string }>(`SELECT count(*) n FROM usage_events`)).rows[0]!.n);
  const committed = async () =>
    (await offsets(kafka.brokers, topic, group)).committed.reduce((s, o) => s + (o < 0n ? 0n : o), 0n);

  const first = await start();
  await send(1000);
  expect(await eventually(stored, (x) => x === 1000)).toBe(1000);

  // Short: a few seconds without a database (well within the retry bound). Nothing is committed
  // meanwhile; the consumer stays up.
  pg.cut();
  const cutAt = Date.now();
  const before = await committed();
  await send(1000);
  await new Promise((r) => setTimeout(r, Math.max(0, cutAt + 3000 - Date.now())));
  expect(await committed()).toBe(before);
  expect([first.proc.exitCode, first.stderr().slice(-500)]).toEqual([null, expect.any(String)]);
  pg.restore();
  expect(await eventually(stored, (x) => x === 2000, 60_000)).toBe(2000);

  // Long: past KAFKA_STORE_RETRY_MS the process exits (non-zero); the next consumer replays.
  pg.cut();
  await send(1000);
  expect(await first.exited).toEqual({ code: 1, signal: null });
  expect(first.stderr()).toMatch(/could not store a batch; exiting/);
  pg.restore();
  await start();
  expect(await eventually(stored, (x) => x === 3000, 60_000)).toBe(3000);
  const o = await eventually(
    () => offsets(kafka.brokers, topic, group),
    (x) => x.ends.every((e, p) => e === 0n || x.committed[p] === e),
  );
  expect(o.committed.map((c) => (c < 0n ? 0n : c))).toEqual(o.ends);
  const owed = await pool.query<{ arrears: string }>(`SELECT arrears::text FROM wallets ORDER BY customer_id`);
  // 3,000 events of 1 credit over 8 customers with no credits: each owes 375, once.
  expect(owed.rows.map((r) => r.arrears)).toEqual(Array(8).fill(String(375n * 1_000_000n)));
  expect(await findViolations(pool)).toEqual([]);
});
