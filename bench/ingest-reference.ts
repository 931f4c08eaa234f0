import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { createPool } from '../db/pool';
import { sha256 } from '../lib/hash';
import { closedLoop } from './lib';

/**
 * The references of bench/ingest: what this Postgres takes from bare INSERTs of the same rows,
 * without the engine's rating, deduplication and ledger work in front of them.
 */
export interface RefEvent {
  id: string;
  customerId: string;
  meter: string;
  quantity: string;
  dimensions: Record<string, string>;
}

const PREBUILT_MAX_ROWS = 4_000_000; // about 1 GB of load-generator memory
const COLUMNS = `customer_id, id, meter, quantity, occurred_at, dimensions, credits, card_name, card_version,
  transaction_id, content_hash`;
const tuples = (rows: number) =>
  Array.from({ length: rows }, (_, i) => `(${Array.from({ length: 11 }, (_, k) => `$${i * 11 + k + 1}`).join(',')})`);

export interface FairReferenceOptions {
  url: string;
  clients: number;
  poolSize: number;
  seconds: number;
  batch: number;
  next: () => RefEvent;
  /** Reads the CPU seconds of the bench's own Postgres cluster. */
  pgCpu: () => number;
}

/**
 * The reference: multi-row INSERT … ON CONFLICT DO NOTHING into a table with usage_events'
 * columns, checks, primary key, index and foreign keys (to customers and, through each customer's
 * grant, to ledger_transactions); the subject's client concurrency and pool size; as long as the
 * subject's timed phase; every batch built before the clock starts.
 */
export async function fairReference(o: FairReferenceOptions) {
  const pool = createPool(o.url, o.poolSize);
  await pool.query(`CREATE TABLE ref_events (LIKE usage_events INCLUDING ALL)`);
  await pool.query(`ALTER TABLE ref_events ADD FOREIGN KEY (customer_id) REFERENCES customers(id),
                      ADD FOREIGN KEY (customer_id, transaction_id) REFERENCES ledger_transactions(customer_id, id)`);
  const txOf = new Map(
    (
      await pool.query<{ c: string; t: string }>(
        `SELECT DISTINCT ON (customer_id) customer_id c, id t FROM ledger_transactions`,
      )
    ).rows.map((r) => [r.c, r.t]),
  );
  const sql = `INSERT INTO ref_events (${COLUMNS}) VALUES ${tuples(o.batch).join(',')} ON CONFLICT DO NOTHING`;
  // Repeated values (customers, quantities, dimensions) are shared, one timestamp per batch:
  // about 240 bytes per prebuilt row.
  const shared = new Map<string, string>();
  const share = (v: string) => shared.get(v) ?? (shared.set(v, v), v);
  const build = (): string[] => {
    const at = new Date().toISOString();
    return Array.from({ length: o.batch }, o.next).flatMap((e) => [
      share(e.customerId),
      e.id,
      e.meter,
      share(e.quantity),
      at,
      share(JSON.stringify(e.dimensions)),
      '2000000',
      'default',
      '1',
      txOf.get(e.customerId)!,
      sha256(e.id),
    ]);
  };
  const drain = async (batches: string[][]) => {
    let rows = 0;
    await Promise.all(
      Array.from({ length: o.clients }, async () => {
        for (let b = batches.pop(); b; b = batches.pop()) {
          await pool.query(sql, b);
          rows += o.batch;
        }
      }),
    );
    return rows;
  };

  // Warm-up, which also sizes the prebuilt batches: 1.5× what the warm-up rate needs, at most
  // PREBUILT_MAX_ROWS (beyond that, batches built in the timed loop are counted and printed).
  const t0 = performance.now();
  const warmRows = await drain(Array.from({ length: 4 * o.clients }, build));
  const warmRate = warmRows / ((performance.now() - t0) / 1000);
  const wanted = Math.min(1.5 * warmRate * o.seconds, PREBUILT_MAX_ROWS);
  const batches = Array.from({ length: Math.ceil(wanted / o.batch) + o.clients }, build);
  await pool.query('CHECKPOINT');

  let builtInLoop = 0;
  const cpu0 = o.pgCpu();
  const run = await closedLoop(o.clients, o.seconds, async () => {
    let b = batches.pop();
    if (!b) {
      builtInLoop++; // reported: the prebuilt supply ran out
      b = build();
    }
    await pool.query(sql, b);
  });
  const rows = run.latencies.length * o.batch;
  const pgCpuPerRow = ((o.pgCpu() - cpu0) / rows) * 1e6;
  await pool.end();
  return {
    rate: rows / run.elapsed,
    seconds: run.elapsed,
    pgCpuPerRow,
    builtInLoop,
    prebuilt: rows + batches.length * o.batch,
  };
}

/**
 * The reference before issue 16 (kept for one side-by-side run, BENCH_OLD_REFERENCE=1): one
 * connection, batches built inside the timed loop, a table without checks or foreign keys.
 */
export async function oldReference(url: string, seconds: number, batch: number, next: () => RefEvent) {
  const ref = new pg.Client({ connectionString: url });
  await ref.connect();
  await ref.query(`CREATE TABLE old_ref_events (LIKE usage_events INCLUDING DEFAULTS INCLUDING INDEXES)`);
  let rows = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const values: unknown[] = [];
    for (const e of Array.from({ length: batch }, next)) {
      values.push(
        e.customerId,
        e.id,
        e.meter,
        e.quantity,
        new Date(),
        JSON.stringify(e.dimensions),
        '2000000',
        'default',
        1,
        randomUUID(),
        sha256(e.id),
      );
    }
    await ref.query(
      `INSERT INTO old_ref_events (${COLUMNS}) VALUES ${tuples(batch).join(',')} ON CONFLICT DO NOTHING`,
      values,
    );
    rows += batch;
  }
  const rate = rows / ((performance.now() - start) / 1000);
  await ref.end();
  return { rate };
}
