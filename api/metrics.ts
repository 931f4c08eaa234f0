import type { RequestHandler } from 'express';
import client from 'prom-client';
import type { Pool } from '../db/pool';
import { readBusinessFigures, type BusinessFigures } from '../db/metrics';
import type { Logger } from '../lib/logger';

export interface BusinessMetricsOptions {
  pool: Pool;
  log?: Logger;
  /** Figures younger than this are served again (a scrape storm reads the database once). */
  cacheMs?: number;
  /** Each aggregate statement's bound. */
  statementTimeoutMs?: number;
}

/**
 * µc (bigint) → credits as a float, at the metrics boundary only: Prometheus values are doubles.
 * Exact to the µc up to 2^53 µc (9 billion credits); beyond, the nearest double.
 */
export const toCredits = (micros: bigint): number => Number(micros / 1_000_000n) + Number(micros % 1_000_000n) / 1e6;

/**
 * Business figures, computed from the database when scraped (so N API processes all report the
 * same totals, and a restart loses nothing): one read at a time per process, reused for `cacheMs`.
 * When a read fails the last figures stay, and `creditflow_business_metrics_up` says 0.
 */
function businessFigures(o: BusinessMetricsOptions) {
  const cacheMs = o.cacheMs ?? 5000;
  let last: { at: number; figures: BusinessFigures } | null = null;
  let inFlight: Promise<void> | null = null;
  let up = 0;
  const refresh = async () => {
    const conn = await o.pool.connect();
    try {
      last = { at: Date.now(), figures: await readBusinessFigures(conn, o.statementTimeoutMs ?? 2000) };
      up = 1;
    } finally {
      conn.release();
    }
  };
  return async (): Promise<{ figures: BusinessFigures | null; up: number }> => {
    if (!last || Date.now() - last.at >= cacheMs) {
      inFlight ??= refresh()
        .catch((err: unknown) => {
          up = 0;
          o.log?.warn({ err: String(err) }, 'business metrics not read; serving the last figures');
        })
        .finally(() => {
          inFlight = null;
        });
      await inFlight;
    }
    return { figures: last?.figures ?? null, up };
  };
}

function registerBusinessMetrics(registry: client.Registry, o: BusinessMetricsOptions): void {
  const read = businessFigures(o);
  const gauge = <L extends string>(
    name: string,
    help: string,
    labelNames: L[],
    set: (g: client.Gauge<L>, f: BusinessFigures, up: number) => void,
  ) =>
    new client.Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const { figures, up } = await read();
        this.reset();
        if (figures) set(this, figures, up);
      },
    });
  new client.Gauge({
    name: 'creditflow_business_metrics_up',
    help: '1 when the last read of the business figures from the database succeeded',
    registers: [registry],
    async collect() {
      this.set((await read()).up);
    },
  });
  gauge(
    'creditflow_ledger_credits',
    'credits (float, from bigint micro-credits) that went through each ledger flow since the start, by lot kind (none: arrears)',
    ['flow', 'kind'],
    (g, f) => {
      for (const c of f.credits) g.set({ flow: c.flow, kind: c.kind }, toCredits(c.micros));
    },
  );
  gauge('creditflow_holds_active', 'holds active now', [], (g, f) => g.set(f.holdsActive));
  gauge('creditflow_holds_active_credits', 'credits held by active holds', [], (g, f) =>
    g.set(toCredits(f.heldMicros)),
  );
  gauge('creditflow_topups', 'automatic top-ups by status (failed: the failures)', ['status'], (g, f) => {
    for (const s of ['pending', 'succeeded', 'failed']) g.set({ status: s }, 0);
    for (const t of f.topUps) g.set({ status: t.status }, t.count);
  });
  gauge(
    'creditflow_webhook_delivery_lag_seconds',
    'age of the oldest webhook delivery not yet delivered (0: none pending)',
    [],
    (g, f) => g.set(f.webhookLagSeconds),
  );
  gauge(
    'creditflow_reconciliation_discrepancies',
    'discrepancies found by the latest finished reconciliation run, with its status (no sample: no run yet)',
    ['status'],
    (g, f) => {
      if (f.reconciliation) g.set({ status: f.reconciliation.status }, f.reconciliation.discrepancies);
    },
  );
  gauge(
    'creditflow_reconciliation_last_finished_timestamp_seconds',
    'when the latest reconciliation run finished (unix time; 0: never)',
    [],
    (g, f) => {
      if (f.reconciliation) g.set(f.reconciliation.finishedAt.getTime() / 1000);
    },
  );
}

/** Prometheus metrics: process defaults, HTTP request counts and latency by route, business figures. */
export function createMetrics(business?: BusinessMetricsOptions) {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const duration = new client.Histogram({
    name: 'creditflow_http_request_duration_seconds',
    help: 'HTTP request latency',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  if (business) registerBusinessMetrics(registry, business);
  const middleware: RequestHandler = (req, res, next) => {
    const end = duration.startTimer();
    res.on('finish', () => {
      // The matched route pattern, never the raw path: ids would explode the label set.
      const route = (req.route as { path?: string } | undefined)?.path ?? 'unmatched';
      end({ method: req.method, route: `${req.baseUrl}${route}`, status: String(res.statusCode) });
    });
    next();
  };
  return { registry, middleware };
}
