import { paymentViolations } from './payment-invariants';
import { reconcileAll } from './reconciliation';
import type { Queryable } from './queryable';

/**
 * The spec's invariants 1–5 as SQL over the whole ledger. Each query returns offending rows;
 * an empty result means the invariant holds. Used by tests and (later) reconciliation.
 */
const CHECKS: Record<string, string> = {
  'inv1: transaction entries sum to zero': `
    SELECT transaction_id::text AS subject, sum(amount)::text AS detail
      FROM ledger_entries GROUP BY transaction_id HAVING sum(amount) <> 0`,
  'inv2: cached available/held equal entry sums': `
    SELECT w.customer_id AS subject,
           format('cached %s/%s, entries %s/%s', w.available, w.held, COALESCE(e.available, 0), COALESCE(e.held, 0)) AS detail
      FROM wallets w
      LEFT JOIN (SELECT customer_id,
                        sum(amount) FILTER (WHERE account = 'available') AS available,
                        sum(amount) FILTER (WHERE account = 'held') AS held
                   FROM ledger_entries GROUP BY customer_id) e ON e.customer_id = w.customer_id
     WHERE w.available <> COALESCE(e.available, 0) OR w.held <> COALESCE(e.held, 0)`,
  'inv3: available + held = Σ lots − arrears': `
    SELECT w.customer_id AS subject,
           format('available+held %s, lots %s, arrears %s', w.available + w.held, COALESCE(l.total, 0), w.arrears) AS detail
      FROM wallets w
      LEFT JOIN (SELECT customer_id, sum(remaining + held) AS total FROM credit_lots GROUP BY customer_id) l
        ON l.customer_id = w.customer_id
     WHERE w.available + w.held <> COALESCE(l.total, 0) - w.arrears`,
  'inv3: lots within bounds': `
    SELECT id::text AS subject, format('remaining %s held %s original %s', remaining, held, original) AS detail
      FROM credit_lots WHERE remaining < 0 OR held < 0 OR remaining + held > original`,
  'inv3: each lot equals its entries': `
    SELECT l.id::text AS subject,
           format('lot %s/%s, entries %s/%s', l.remaining, l.held, COALESCE(e.available, 0), COALESCE(e.held, 0)) AS detail
      FROM credit_lots l
      LEFT JOIN (SELECT lot_id,
                        sum(amount) FILTER (WHERE account = 'available') AS available,
                        sum(amount) FILTER (WHERE account = 'held') AS held
                   FROM ledger_entries WHERE lot_id IS NOT NULL GROUP BY lot_id) e ON e.lot_id = l.id
     WHERE l.remaining <> COALESCE(e.available, 0) OR l.held <> COALESCE(e.held, 0)`,
  'inv3: arrears equal the unassigned available entries': `
    SELECT w.customer_id AS subject, format('arrears %s, unassigned %s', w.arrears, COALESCE(e.s, 0)) AS detail
      FROM wallets w
      LEFT JOIN (SELECT customer_id, sum(amount) AS s FROM ledger_entries
                  WHERE lot_id IS NULL AND account IN ('available', 'held') GROUP BY customer_id) e
        ON e.customer_id = w.customer_id
     WHERE -w.arrears <> COALESCE(e.s, 0)`,
  'inv4: one transaction per idempotency key, each with its record': `
    SELECT t.idempotency_key AS subject, 'no idempotency record' AS detail
      FROM ledger_transactions t
      LEFT JOIN idempotency_keys k ON k.customer_id = t.customer_id AND k.key = t.idempotency_key
     WHERE k.key IS NULL AND t.type <> 'usage'`,
  'inv4: each usage transaction debits exactly its events, each event once': `
    SELECT t.id::text AS subject, format('consumed %s, events %s', COALESCE(c.s, 0), COALESCE(ev.s, 0)) AS detail
      FROM ledger_transactions t
      LEFT JOIN (SELECT transaction_id, sum(amount) s FROM ledger_entries WHERE account = 'consumed'
                  GROUP BY transaction_id) c ON c.transaction_id = t.id
      LEFT JOIN (SELECT transaction_id, sum(credits) s FROM usage_events GROUP BY transaction_id) ev
        ON ev.transaction_id = t.id
     WHERE t.type = 'usage' AND COALESCE(c.s, 0) <> COALESCE(ev.s, 0)`,
  'holds: each lot is held exactly by its holds': `
    SELECT l.id::text AS subject, format('lot held %s, holds %s', l.held, COALESCE(h.s, 0)) AS detail
      FROM credit_lots l LEFT JOIN (SELECT lot_id, sum(held) s FROM hold_lots GROUP BY lot_id) h ON h.lot_id = l.id
     WHERE l.held <> COALESCE(h.s, 0)`,
  'holds: a hold holds the sum of its lots and its overdraft part; a finished hold holds nothing': `
    SELECT h.id AS subject,
           format('%s holds %s, lots %s, overdraft %s', h.status, h.held, COALESCE(x.s, 0), h.overdraft) AS detail
      FROM holds h LEFT JOIN (SELECT customer_id, hold_id, sum(held) s FROM hold_lots GROUP BY 1, 2) x
        ON x.customer_id = h.customer_id AND x.hold_id = h.id
     WHERE h.held <> COALESCE(x.s, 0) + h.overdraft OR (h.status <> 'active' AND h.held <> 0)`,
  "holds: credits held on no lot are the active holds' overdraft parts": `
    SELECT w.customer_id AS subject, format('held on no lot %s, overdraft of holds %s', COALESCE(e.s, 0), COALESCE(h.s, 0)) AS detail
      FROM wallets w
      LEFT JOIN (SELECT customer_id, sum(amount) s FROM ledger_entries
                  WHERE lot_id IS NULL AND account = 'held' GROUP BY customer_id) e ON e.customer_id = w.customer_id
      LEFT JOIN (SELECT customer_id, sum(overdraft) s FROM holds WHERE status = 'active' GROUP BY 1) h
        ON h.customer_id = w.customer_id
     WHERE COALESCE(e.s, 0) <> COALESCE(h.s, 0)`,
  'holds: a wallet holds what its active holds hold': `
    SELECT w.customer_id AS subject, format('wallet held %s, holds %s', w.held, COALESCE(h.s, 0)) AS detail
      FROM wallets w LEFT JOIN (SELECT customer_id, sum(held) s FROM holds WHERE status = 'active' GROUP BY 1) h
        ON h.customer_id = w.customer_id
     WHERE w.held <> COALESCE(h.s, 0)`,
  'inv5: ledger tables refuse UPDATE/DELETE/TRUNCATE': `
    SELECT t.name AS subject, 'append-only trigger missing' AS detail
      FROM (VALUES ('ledger_transactions'), ('ledger_entries')) AS t(name)
     WHERE (SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
             WHERE c.relname = t.name AND g.tgname LIKE '%append_only' AND g.tgenabled <> 'D') = 0
        OR (SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
             WHERE c.relname = t.name AND g.tgname LIKE '%no_truncate' AND g.tgenabled <> 'D') = 0`,
};

export interface Violation {
  invariant: string;
  subject: string;
  detail: string;
}

/** `reconciliation: false` skips the nightly checks' cross-check (a per-step loop's cheap variant). */
export async function findViolations(q: Queryable, o: { reconciliation?: boolean } = {}): Promise<Violation[]> {
  const out: Violation[] = [];
  for (const [invariant, sql] of Object.entries(CHECKS)) {
    const res = await q.query<{ subject: string; detail: string }>(sql);
    for (const r of res.rows) out.push({ invariant, subject: r.subject, detail: r.detail });
  }
  out.push(...(await paymentViolations(q))); // invariant 9: money in
  // The nightly reconciliation's own checks must agree — but for invariant 7 (expiry is booked),
  // which needs the lifecycle workflows that ledger-level tests do not run.
  if (o.reconciliation === false) return out;
  for (const d of await reconcileAll(q, { sandbox: true, expiryGraceSeconds: 3600 }))
    if (!d.check.startsWith('lots: expired'))
      out.push({ invariant: `reconciliation: ${d.check}`, subject: d.subject, detail: d.detail });
  return out;
}
