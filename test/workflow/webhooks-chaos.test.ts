import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { enqueue } from '../../db/outbox';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { requestHash } from '../../lib/hash';
import { startWebhookDelivery } from '../../webhooks/workflows';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { freePort } from '../support/ports';
import { startReceiver, verify, waitFor } from '../support/webhook-receiver';
import { killAllWorkers, spawnWorker } from '../support/workers';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let connection: Connection;
let client: Client;
let api: TestApi;
const taskQueue = `webhooks-chaos-${randomUUID()}`;

beforeAll(async () => {
  // The spawned workers inherit this environment: production mode, loopback allowlisted.
  process.env.CREDITFLOW_MODE = 'production';
  process.env.WEBHOOK_ALLOWED_HOSTS = '127.0.0.1';
  db = await freshDatabase();
  pool = db.pool;
  connection = await Connection.connect({ address: process.env.TEST_TEMPORAL_ADDRESS! });
  client = new Client({ connection });
  api = await startApi(pool, { webhooks: (id) => startWebhookDelivery(client, taskQueue, id) });
  await createCustomer(pool, { id: 'chaos' }, requestHash({ id: 'chaos' }));
});
afterAll(async () => {
  await killAllWorkers();
  await api.close();
  await connection.close();
  await db.drop();
});

async function emit(): Promise<string> {
  const key = `chaos:${randomUUID()}`;
  await enqueue(pool, [{ dedupeKey: key, type: 'topup.failed', customerId: 'chaos', payload: { key } }]);
  return (await pool.query<{ id: string }>(`SELECT id::text FROM outbox_events WHERE dedupe_key = $1`, [key])).rows[0]!
    .id;
}

const worker = () =>
  spawnWorker({ databaseUrl: db.url, temporalAddress: process.env.TEST_TEMPORAL_ADDRESS!, taskQueue });

it('a receiver down across a worker SIGKILL and restart gets everything once it is back, each id once', async () => {
  const port = await freePort(); // nothing listens there yet: every attempt is refused
  const first = worker();
  await first.ready;
  const admin = await makeKey(pool, 'admin');
  const created = await call(api.url, 'POST', '/v1/webhook-endpoints', {
    key: admin,
    json: { url: `http://127.0.0.1:${port}/hook` },
  });
  expect(created.status).toBe(201);
  const { id, secret } = created.body as { id: string; secret: string };

  const events: string[] = [];
  for (let i = 0; i < 5; i++) events.push(await emit());
  const tried = async () =>
    (await pool.query(`SELECT DISTINCT event_id FROM webhook_attempts WHERE endpoint_id = $1`, [id])).rowCount;
  await waitFor('refused attempts', async () => ((await tried()) ?? 0) >= 1, 30_000);

  first.proc.kill('SIGKILL');
  expect((await first.exited).signal).toBe('SIGKILL');
  // Written while no worker runs: the outbox keeps them.
  for (let i = 0; i < 3; i++) events.push(await emit());
  const second = worker();
  await second.ready;
  const rx = await startReceiver(() => 200, port);
  try {
    const delivered = async () =>
      (await pool.query(`SELECT 1 FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'delivered'`, [id]))
        .rowCount === events.length;
    const t0 = Date.now();
    await waitFor('everything delivered', delivered, 90_000);
    console.log(`webhooks chaos: delivered ${Date.now() - t0} ms after the receiver came back`);
    await new Promise((r) => setTimeout(r, 1500));

    const ids = rx.received.map((r) => r.headers['webhook-id']);
    expect([...ids].sort()).toEqual(events.map((e) => `evt_${e}`).sort()); // each once
    for (const r of rx.received) verify(secret, r);
    const log = await pool.query<{ event_id: string; status_code: number | null; attempt: number }>(
      `SELECT event_id::text, status_code, attempt FROM webhook_attempts WHERE endpoint_id = $1 ORDER BY id`,
      [id],
    );
    for (const e of events) {
      const mine = log.rows.filter((a) => a.event_id === e);
      // Refused while the receiver was down, then exactly one 200 — the last attempt.
      expect(mine.filter((a) => a.status_code === 200)).toHaveLength(1);
      expect(mine[mine.length - 1]!.status_code).toBe(200);
      expect(mine.slice(0, -1).every((a) => a.status_code === null)).toBe(true);
    }
  } finally {
    await rx.close();
  }
});
