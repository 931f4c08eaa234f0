import { randomBytes } from 'node:crypto';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { eventually } from '../support/eventually';
import { offsets, produce, readAll, spawnConsumer, startKafka, type Record_, type TestKafka } from '../support/kafka';
import { freePort } from '../support/ports';
import { killAllWorkers, type WorkerProcess } from '../support/workers';

jest.setTimeout(300_000);

let kafka: TestKafka;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let admin: string;
let service: string;

const run = randomBytes(3).toString('hex');
const MICROS = 1_000_000n;
// One credit per unit: the expected debit of an event is its quantity, exactly.
const CARD = { effectiveFrom: '2020-01-01T00:00:00Z', rules: [{ meter: 'units', credits: '1', per: 1 }] };

beforeAll(async () => {
  [kafka, db] = await Promise.all([startKafka(), freshDatabase()]);
  pool = db.pool;
  api = await startApi(pool);
  admin = await makeKey(pool, 'admin');
  service = await makeKey(pool, 'service');
  expect((await call(api.url, 'PUT', '/v1/rate-cards/default', { key: admin, json: CARD })).status).toBe(201);
});
afterAll(async () => {
  await killAllWorkers();
  await api?.close();
  await db?.drop();
  await kafka?.stop();
});

async function customers(prefix: string, n: number, grant: string): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  for (const id of ids) {
    expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
    if (grant !== '0') {
      const g = await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
        key: admin,
        json: { amount: grant, kind: 'purchased' },
        headers: { 'idempotency-key': `g-${id}` },
      });
      expect(g.status).toBe(201);
    }
  }
  return ids;
}

const event = (id: string, customerId: string, quantity: number, extra: object = {}) => ({
  id,
  customerId,
  meter: 'units',
  quantity: String(quantity),
  timestamp: '2026-06-01T00:00:00Z',
  ...extra,
});
const record = (e: { customerId: string }): Record_ => ({ key: e.customerId, value: JSON.stringify(e) });

async function consumer(topic: string, groupId: string): Promise<WorkerProcess & { metrics: string }> {
  const port = await freePort();
  const c = spawnConsumer({ databaseUrl: db.url, brokers: kafka.brokers, topic, groupId, metricsPort: port });
  await c.ready;
  return { ...c, metrics: `http://127.0.0.1:${port}/metrics` };
}

/** Partitions a consumer holds and their lag, from its own /metrics. */
async function lagSeries(metricsUrl: string): Promise<Map<number, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const out = new Map<number, number>();
  for (const m of text.matchAll(/^creditflow_ingest_lag_records\{[^}]*partition="(\d+)"[^}]*\} (\d+)/gm))
    out.set(Number(m[1]), Number(m[2]));
  return out;
}

/** Waits until the group has committed every partition to its end. */
async function drained(topic: string, groupId: string, ms = 60_000) {
  const done = async () => {
    const o = await offsets(kafka.brokers, topic, groupId);
    return o.ends.every((e, p) => e === 0n || o.committed[p] === e);
  };
  expect(await eventually(done, (ok) => ok, ms)).toBe(true);
}

const wallet = async (id: string) =>
  (
    await pool.query<{ available: string; arrears: string }>(
      `SELECT available::text, arrears::text FROM wallets WHERE customer_id = $1`,
      [id],
    )
  ).rows[0]!;
const debits = async (customerId: string, ids: string[]) =>
  Number(
    (
      await pool.query<{ n: string }>(`SELECT count(*) n FROM usage_events WHERE customer_id = $1 AND id = ANY($2)`, [
        customerId,
        ids,
      ])
    ).rows[0]!.n,
  );

test('an event produced twice, or sent by HTTP and by Kafka in either order, is debited once; poison goes to <topic>.rejected with its reason and never stalls the partition', async () => {
  const topic = `usage-${run}-a`;
  const group = `g-${run}-a`;
  const [twice, httpFirst, kafkaFirst, broke] = await customers(`a${run}-`, 4, '100');
  const zero = (await customers(`n${run}-`, 2, '0')) as [string, string];
  const c = await consumer(topic, group);

  // Before the consumer sees them: HTTP takes the first of each HTTP/Kafka pair.
  const e1 = event(`e1-${run}`, httpFirst!, 7);
  const h1 = await call(api.url, 'POST', '/v1/events', { key: service, json: { events: [e1] } });
  expect(h1.body.results[0].status).toBe('accepted');

  const e0 = event(`e0-${run}`, twice!, 5);
  const e2 = event(`e2-${run}`, kafkaFirst!, 3);
  const inArrears = event(`e3-${run}`, zero[0], 4);
  const poison: { rec: Record_; code: string; reason: RegExp }[] = [
    { rec: { key: broke!, value: '{"id": "p1", oops' }, code: 'invalid', reason: /not valid JSON/ },
    { rec: { key: broke!, value: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]) }, code: 'invalid', reason: /UTF-8/ },
    { rec: { key: broke!, value: '' }, code: 'invalid', reason: /no value/ },
    { rec: { key: 'someone-else', value: JSON.stringify(event('p2', broke!, 1)) }, code: 'invalid', reason: /key/ },
    { rec: record(event('p3', `ghost-${run}`, 1)), code: 'unknown_customer', reason: /does not exist/ },
    { rec: record(event('p4', broke!, 1, { meter: 'nope' })), code: 'unknown_meter', reason: /./ },
    { rec: record(event('p5\u0000', broke!, 1)), code: 'invalid', reason: /NUL/ },
    {
      rec: { key: broke!, value: `{"id":"p6","id":"p7","customerId":"${broke}"}` },
      code: 'invalid',
      reason: /duplicate key/,
    },
    { rec: record(event(e0.id, twice!, 6)), code: 'conflict', reason: /different content/ },
  ];
  // Poison first on its partition, then a valid event behind it: it must still be debited.
  const behind = event(`e4-${run}`, broke!, 2);
  await produce(kafka.brokers, topic, [
    record(e0),
    record(e0),
    record(e1),
    record(e2),
    record(inArrears),
    ...poison.slice(0, -1).map((p) => p.rec),
    record(behind),
  ]);
  await drained(topic, group);
  // The conflicting twin after the original is stored; then HTTP sends what Kafka took first.
  await produce(kafka.brokers, topic, [poison.at(-1)!.rec]);
  await drained(topic, group);
  const h2 = await call(api.url, 'POST', '/v1/events', { key: service, json: { events: [e2] } });
  expect(h2.body.results[0].status).toBe('duplicate');

  expect(await debits(twice!, [e0.id])).toBe(1);
  expect(await debits(httpFirst!, [e1.id])).toBe(1);
  expect(await debits(kafkaFirst!, [e2.id])).toBe(1);
  expect(await debits(broke!, [behind.id])).toBe(1);
  expect((await wallet(twice!)).available).toBe(String((100n - 5n) * MICROS));
  expect((await wallet(httpFirst!)).available).toBe(String((100n - 7n) * MICROS));
  expect((await wallet(kafkaFirst!)).available).toBe(String((100n - 3n) * MICROS));
  expect((await wallet(broke!)).available).toBe(String((100n - 2n) * MICROS));
  // Too little credit: the same as HTTP — accepted, the rest becomes arrears.
  const viaHttp = await call(api.url, 'POST', '/v1/events', {
    key: service,
    json: { events: [event(`e5-${run}`, zero[1], 4)] },
  });
  expect(viaHttp.body.results[0].status).toBe('accepted');
  expect(await wallet(zero[0])).toEqual(await wallet(zero[1]));
  expect((await wallet(zero[0])).arrears).toBe(String(4n * MICROS));

  const dead = await readAll(kafka.brokers, `${topic}.rejected`);
  expect(dead).toHaveLength(poison.length);
  for (const p of poison) {
    const d = dead.find((x) => Buffer.compare(x.bytes ?? Buffer.alloc(0), Buffer.from(p.rec.value ?? '')) === 0);
    expect(d).toBeDefined();
    expect(d!.headers['creditflow-error-code']).toBe(p.code);
    expect(d!.headers['creditflow-error-reason']).toMatch(p.reason);
    expect(d!.headers['creditflow-source']).toMatch(new RegExp(`^${topic}/\\d+/\\d+$`));
  }

  // The consumer's own metrics: lag per partition it holds (all four, drained), outcomes counted.
  const lag = await lagSeries(c.metrics);
  expect([...lag.keys()].sort()).toEqual([0, 1, 2, 3]);
  expect([...lag.values()].every((n) => n === 0)).toBe(true);
  const text = await (await fetch(c.metrics)).text();
  expect(text).toMatch(/creditflow_ingest_records_total\{outcome="rejected"\} 9/);
  expect(await findViolations(pool)).toEqual([]);
  c.proc.kill('SIGTERM');
  expect(await c.exited).toEqual({ code: 0, signal: null });
});

test('100,000 events over 4 partitions, two consumers, one SIGKILLed midway and restarted: every event debited exactly once, poison dead-lettered, offsets never ahead of the database', async () => {
  const topic = `usage-${run}-b`;
  const group = `g-${run}-b`;
  const N = 100_000;
  const GRANT = 1_000_000n;
  const ids = await customers(`b${run}-`, 200, String(GRANT));
  const quantity = (i: number) => 1 + (i % 7);
  const records: Record_[] = [];
  const poisonAt = new Set<number>();
  for (let i = 0; i < N; i++) {
    records.push(record(event(`b-${i}`, ids[i % ids.length]!, quantity(i))));
    if (i % 5000 === 2500) {
      poisonAt.add(records.length);
      records.push({ key: ids[i % ids.length], value: `{"id":"poison-${i}"` });
    }
  }

  let a = await consumer(topic, group);
  const b = await consumer(topic, group);
  // Rebalancing: the two share the four partitions.
  const shared = async () => [await lagSeries(a.metrics), await lagSeries(b.metrics)];
  const [la, lb] = await eventually(shared, ([x, y]) => x!.size > 0 && y!.size > 0 && x!.size + y!.size === 4);
  expect([...la!.keys(), ...lb!.keys()].sort()).toEqual([0, 1, 2, 3]);

  const stored = async () =>
    new Set(
      (await pool.query<{ id: string }>(`SELECT id FROM usage_events WHERE id LIKE 'b-%'`)).rows.map((r) => r.id),
    );
  // Samples of (committed offsets, then the events in the database): whatever was committed
  // before the database was read must be in it.
  const samples: { committed: bigint[]; ids: Set<string> }[] = [];
  const sample = async () => {
    const { committed } = await offsets(kafka.brokers, topic, group);
    samples.push({ committed, ids: await stored() });
    return samples.at(-1)!.ids.size;
  };

  const producing = produce(kafka.brokers, topic, records);
  await eventually(sample, (n) => n >= 30_000, 120_000);
  a.proc.kill('SIGKILL');
  expect(await a.exited).toEqual({ code: null, signal: 'SIGKILL' });
  await sample();
  // The survivor takes over all four partitions once the dead member's session expires.
  expect(
    (
      await eventually(
        () => lagSeries(b.metrics),
        (l) => l.size === 4,
      )
    ).size,
  ).toBe(4);
  a = await consumer(topic, group);
  await producing;
  const done = await eventually(sample, (n) => n === N, 180_000);
  expect(done).toBe(N);
  await drained(topic, group);
  await sample();

  // Exactly once: the count, and the money per customer and in total.
  const sums = await pool.query<{ customer_id: string; n: string; credits: string }>(
    `SELECT customer_id, count(*) n, sum(credits)::text credits FROM usage_events WHERE id LIKE 'b-%' GROUP BY customer_id`,
  );
  expect(sums.rows.reduce((s, r) => s + Number(r.n), 0)).toBe(N);
  const expected = new Map<string, bigint>();
  for (let i = 0; i < N; i++) {
    const c = ids[i % ids.length]!;
    expected.set(c, (expected.get(c) ?? 0n) + BigInt(quantity(i)) * MICROS);
  }
  for (const r of sums.rows) expect(BigInt(r.credits)).toBe(expected.get(r.customer_id));
  const ledger = await pool.query<{ customer_id: string; available: string; entries: string }>(
    `SELECT w.customer_id, w.available::text, (SELECT sum(amount) FROM ledger_entries e
        WHERE e.customer_id = w.customer_id AND e.account = 'available')::text entries
       FROM wallets w WHERE w.customer_id = ANY($1)`,
    [ids],
  );
  for (const r of ledger.rows) {
    expect(BigInt(r.available)).toBe(GRANT * MICROS - expected.get(r.customer_id)!);
    expect(r.entries).toBe(r.available);
  }
  expect(await findViolations(pool)).toEqual([]);

  // Offsets never ahead of the database, at any sample (the one right after the kill included).
  const all = await readAll(kafka.brokers, topic);
  expect(all).toHaveLength(records.length);
  const ahead: string[] = [];
  for (const r of all) {
    let id: string | null = null;
    try {
      id = (JSON.parse(r.bytes!.toString()) as { id: string }).id;
    } catch {
      continue; // poison: checked in the dead-letter topic below
    }
    for (const s of samples)
      if (BigInt(r.offset) < (s.committed[r.partition] ?? -1n) && !s.ids.has(id))
        ahead.push(`${r.partition}/${r.offset}`);
  }
  expect(samples.length).toBeGreaterThan(3);
  expect(ahead).toEqual([]);

  // Every poison record is dead-lettered with its reason (a replay after the kill may repeat one).
  const dead = await readAll(kafka.brokers, `${topic}.rejected`);
  const poisonValues = new Set([...poisonAt].map((i) => String(records[i]!.value)));
  expect(new Set(dead.map((d) => d.bytes!.toString()))).toEqual(poisonValues);
  for (const d of dead) expect(d.headers['creditflow-error-reason']).toBe('the value is not valid JSON');
});
