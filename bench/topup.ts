import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { Client, Connection } from '@temporalio/client';
import { createPool, type Pool } from '../db/pool';
import { putPaymentMethod } from '../db/payments';
import { putRule } from '../db/topup-rules';
import { createCustomer } from '../ledger/customers';
import { Ledger } from '../ledger/ledger';
import { requestHash, sha256 } from '../lib/hash';
import { fmt, openLoop, ownChild, startApiProcess, startReferenceWorker, stats } from './lib';
import { benchDatabase, benchTemporal } from './setup';

/**
 * bench/topup: time from the usage event that takes a wallet below its threshold (the POST
 * /v1/events request sent) to the top-up's purchased lot on the ledger (its transaction's
 * timestamp), through the API process, the trigger, the `topup:<customer>` workflow and its
 * plan → charge (sandbox gateway) → grant steps in the worker process. The reference, measured
 * in the same run on the same Temporal server at the same rate: a bare workflow with one no-op
 * local activity, started and awaited (its worker in its own process).
 */
const PG_PORT = Number(process.env.BENCH_PG_PORT ?? 55499);
const API_PORT = Number(process.env.BENCH_API_PORT ?? 39312);
const T_PORT = Number(process.env.BENCH_TEMPORAL_PORT ?? 39313);
const TOPUPS = Number(process.env.BENCH_TOPUPS ?? 240);
const RATE = Number(process.env.BENCH_RATE ?? 8); // top-ups (and reference workflows) started per second
const ADMIN_KEY = `bench_admin_${randomUUID()}`;
const TASK_QUEUE = 'bench-topup';
const phase = (name: string) => console.error(`${new Date().toISOString()} bench/topup: ${name}`);

/** Wallets with 60 credits, a rule (threshold 50, fixed 100, visa): one 20-credit event triggers a top-up. */
async function seed(pool: Pool, n: number, prefix: string): Promise<string[]> {
  const ledger = new Ledger(pool);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `${prefix}${i}`;
    await createCustomer(pool, { id }, requestHash({ id }));
    await ledger.grant(
      { customerId: id, key: `g:${id}`, requestHash: 'g' },
      { amount: 60_000_000n, kind: 'promotional' },
    );
    await putPaymentMethod(pool, id, { paymentMethod: 'pm_card_visa' });
    await putRule(pool, id, {
      enabled: true,
      threshold: 50_000_000n,
      mode: 'fixed',
      credits: 100_000_000n,
      unitPrice: '1',
      currency: 'USD',
      paymentMethod: null,
      cooldownSeconds: 60,
      maxPerDay: 10,
      maxAttempts: 4,
    });
    ids.push(id);
  }
  return ids;
}

async function lotAt(pool: Pool, customerId: string, timeoutMs = 60_000): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await pool.query<{ at: Date }>(
      `SELECT t.created_at AS at FROM credit_lots l JOIN ledger_transactions t ON t.idempotency_key = $2
       WHERE l.customer_id = $1 AND l.kind = 'purchased' LIMIT 1`,
      [customerId, `payment:${customerId}:topup_1`],
    );
    if (r.rows[0]) return r.rows[0].at.getTime();
    if (Date.now() > until) throw new Error(`no top-up lot for ${customerId}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function main(): Promise<void> {
  const url = await benchDatabase('topup', 'pg', PG_PORT);
  const pool = createPool(url, 8);
  phase('seeding');
  const warm = await seed(pool, 20, 'w');
  const ids = await seed(pool, TOPUPS, 'c');
  await pool.query(`INSERT INTO api_keys (id, key_hash, role) VALUES ('bench', $1, 'admin')`, [sha256(ADMIN_KEY)]);

  const temporal = await benchTemporal(T_PORT, 'temporal-topup.log');
  const env = {
    DATABASE_URL: url,
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_TASK_QUEUE: TASK_QUEUE,
    PAYMENT_GATEWAY: 'sandbox',
    LOG_LEVEL: 'warn',
  };
  const worker = ownChild(
    spawn(process.execPath, ['dist/worker/main.js'], { env: { ...process.env, ...env }, stdio: 'inherit' }),
  );
  const api = await startApiProcess({ ...env, CREDITFLOW_ADMIN_KEY: ADMIN_KEY }, API_PORT);
  const headers = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };
  const card = await fetch(`http://127.0.0.1:${API_PORT}/v1/rate-cards/default`, {
    method: 'PUT',
    headers,
    body: JSON.stringify({
      effectiveFrom: '2020-01-01T00:00:00Z',
      rules: [{ meter: 'tokens', credits: '1', per: 1000 }],
    }),
  });
  if (card.status !== 201) throw new Error(`rate card ${card.status}`);

  /** One top-up: the debit that crosses the threshold → the lot's transaction time. */
  const topUp = async (customerId: string, into: number[]) => {
    const sent = Date.now();
    const res = await fetch(`http://127.0.0.1:${API_PORT}/v1/events`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ events: [{ id: `e-${customerId}`, customerId, meter: 'tokens', quantity: '20000' }] }),
    });
    const body = (await res.json()) as { results: { status: string }[] };
    if (res.status !== 200 || body.results[0]?.status !== 'accepted') throw new Error(`event ${res.status}`);
    into.push((await lotAt(pool, customerId)) - sent);
  };

  phase('warm-up');
  const warmLat: number[] = [];
  for (const id of warm) await topUp(id, warmLat);

  // Reference and subject interleaved in one open loop (one of each per tick), so both see the
  // same machine: these machines are shared and noisy.
  phase('reference and top-ups, interleaved');
  const conn = await Connection.connect({ address: temporal.address });
  const client = new Client({ connection: conn });
  const refWorker = await startReferenceWorker({ ...env, TEMPORAL_TASK_QUEUE: 'bench-reference' });
  const refLat: number[] = [];
  const reference = async () => {
    const t0 = Date.now();
    await client.workflow.execute('referenceWorkflow', {
      taskQueue: 'bench-reference',
      workflowId: `ref-${randomUUID()}`,
    });
    refLat.push(Date.now() - t0);
  };
  for (let i = 0; i < 20; i++) await reference();
  refLat.length = 0;
  const lat: number[] = [];
  let tick = 0;
  let next = 0;
  await openLoop(2 * RATE, TOPUPS / RATE, () => (tick++ % 2 === 0 ? reference() : topUp(ids[next++]!, lat)));
  refWorker.kill('SIGTERM');
  await once(refWorker, 'exit');

  const check = await pool.query<{ charges: string; lots: string; payments: string }>(
    `SELECT (SELECT count(*) FROM sandbox_charges) AS charges,
            (SELECT count(*) FROM credit_lots WHERE kind = 'purchased') AS lots,
            (SELECT count(*) FROM payments WHERE status = 'succeeded') AS payments`,
  );
  api.kill('SIGTERM');
  worker.kill('SIGTERM');
  await conn.close();
  await temporal.stop();
  await pool.end();
  const r = stats(refLat);
  const s = stats(lat);
  const c = check.rows[0]!;
  console.log(`
bench/topup — ${RATE} top-ups and ${RATE} reference workflows per second, interleaved (open loop), one Temporal dev server
  reference  bare workflow + 1 no-op local activity, start → completed (worker in its own process): p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms (${r.n})
  top-up     threshold-crossing POST /v1/events → purchased lot on the ledger: p50 ${fmt(s.p50)} ms, p99 ${fmt(s.p99)} ms (${s.n})
  ratio      p99 ${fmt(s.p99 / r.p99, 2)} × reference (target ≤ 2 ×), p50 ${fmt(s.p50 / r.p50, 2)} ×
  check      sandbox charges ${c.charges}, purchased lots ${c.lots}, succeeded top-ups ${c.payments} (all three must equal ${TOPUPS + warm.length})
`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
