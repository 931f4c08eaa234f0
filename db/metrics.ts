import type { Queryable } from './queryable';

/** Business figures for /metrics, read from the database so every API process reports the same. */
export interface BusinessFigures {
  /** Σ µc per flow (granted, consumed, expired, voided, refunded) and lot kind ('none': no lot, i.e. arrears). */
  credits: { flow: string; kind: string; micros: bigint }[];
  holdsActive: number;
  heldMicros: bigint;
  topUps: { status: string; count: number }[];
  /** Age of the oldest webhook delivery not yet delivered (0 when none). */
  webhookLagSeconds: number;
  /** The latest finished reconciliation run, if any. */
  reconciliation: { discrepancies: number; finishedAt: Date; status: string } | null;
}

/**
 * A handful of aggregates, one connection, read-only, each statement bounded by `timeoutMs`
 * (a slow one fails this read: the caller keeps the last figures). The ledger sums scan the
 * system-account entries: the one figure whose cost grows with the ledger.
 */
export async function readBusinessFigures(q: Queryable, timeoutMs: number): Promise<BusinessFigures> {
  await q.query('BEGIN READ ONLY');
  try {
    await q.query(`SELECT set_config('statement_timeout', $1, true)`, [String(timeoutMs)]);
    const credits = await q.query<{ flow: string; kind: string; micros: string }>(
      `SELECT CASE WHEN e.account LIKE 'issued:%' THEN 'granted' ELSE e.account END AS flow,
              coalesce(l.kind, 'none') AS kind,
              sum(CASE WHEN e.account LIKE 'issued:%' THEN -e.amount ELSE e.amount END)::text AS micros
         FROM ledger_entries e LEFT JOIN credit_lots l ON l.id = e.lot_id
        WHERE e.account NOT IN ('available', 'held')
        GROUP BY 1, 2`,
    );
    const holds = await q.query<{ n: string; held: string }>(
      `SELECT count(*)::text AS n, coalesce(sum(held), 0)::text AS held FROM holds WHERE status = 'active'`,
    );
    const topUps = await q.query<{ status: string; n: string }>(
      `SELECT status, count(*)::text AS n FROM payments WHERE source = 'topup' GROUP BY status`,
    );
    const lag = await q.query<{ s: number | null }>(
      `SELECT extract(epoch FROM now() - min(created_at))::float8 AS s FROM webhook_deliveries WHERE status = 'pending'`,
    );
    const run = await q.query<{ n: number; finished_at: Date; status: string }>(
      `SELECT coalesce((summary->>'discrepancyCount')::int, jsonb_array_length(discrepancies)) AS n, finished_at, status
         FROM reconciliation_runs
        WHERE finished_at IS NOT NULL AND status <> 'failed' ORDER BY finished_at DESC LIMIT 1`,
    );
    await q.query('COMMIT');
    const r = run.rows[0];
    return {
      credits: credits.rows.map((x) => ({ flow: x.flow, kind: x.kind, micros: BigInt(x.micros) })),
      holdsActive: Number(holds.rows[0]!.n),
      heldMicros: BigInt(holds.rows[0]!.held),
      topUps: topUps.rows.map((x) => ({ status: x.status, count: Number(x.n) })),
      webhookLagSeconds: Math.max(0, lag.rows[0]?.s ?? 0),
      reconciliation: r ? { discrepancies: r.n, finishedAt: r.finished_at, status: r.status } : null,
    };
  } catch (err) {
    await q.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
