import type { Queryable } from './queryable';

/**
 * Reconciliation over one page of wallets, from the ledger itself: each check is an invariant of
 * db/invariants.ts (and db/payment-invariants.ts) restricted to the customers in (after, last],
 * so a page reads only its customers' rows through the (customer_id, …) indexes. Each returns
 * offending rows; empty means it holds. Nothing here writes to the ledger.
 */
const IN_PAGE = (col: string) => `${col} > $1 AND ${col} <= $2`;

/**
 * The page's entries are aggregated twice, each a plain GROUP BY (measured: grouping sets or FILTERed
 * sums over every entry cost 2–4× more): the wallet accounts per (customer, lot), from which the
 * per-customer and per-lot sums follow, and the unbalanced transactions. Every check below reads
 * those small aggregates, in ONE statement per page.
 */
const PAGE_ENTRIES = `
  ca AS MATERIALIZED (
    SELECT customer_id, lot_id, account, sum(amount) AS amount FROM ledger_entries
     WHERE ${IN_PAGE('customer_id')} AND account IN ('available', 'held') GROUP BY 1, 2, 3),
  ce AS (SELECT customer_id,
                COALESCE(sum(amount) FILTER (WHERE account = 'available'), 0) AS available,
                COALESCE(sum(amount) FILTER (WHERE account = 'held'), 0) AS held,
                COALESCE(sum(amount) FILTER (WHERE lot_id IS NULL), 0) AS unassigned,
                COALESCE(sum(amount) FILTER (WHERE lot_id IS NULL AND account = 'held'), 0) AS held_no_lot
           FROM ca GROUP BY customer_id),
  le AS (SELECT lot_id, COALESCE(sum(amount) FILTER (WHERE account = 'available'), 0) AS available,
                COALESCE(sum(amount) FILTER (WHERE account = 'held'), 0) AS held
           FROM ca WHERE lot_id IS NOT NULL GROUP BY lot_id),
  unbalanced AS (SELECT transaction_id, sum(amount) AS total FROM ledger_entries
                  WHERE ${IN_PAGE('customer_id')} GROUP BY 1 HAVING sum(amount) <> 0),
  w AS MATERIALIZED (SELECT * FROM wallets WHERE ${IN_PAGE('customer_id')}),
  lots AS MATERIALIZED (SELECT * FROM credit_lots WHERE ${IN_PAGE('customer_id')}),
  hl AS (SELECT customer_id, hold_id, lot_id, held FROM hold_lots WHERE ${IN_PAGE('customer_id')}),
  ah AS (SELECT customer_id, sum(held) AS held, sum(overdraft) AS overdraft FROM holds
          WHERE ${IN_PAGE('customer_id')} AND status = 'active' GROUP BY customer_id)`;

const PAGE_CHECKS: Record<string, string> = {
  'inv1: transaction entries sum to zero': `
    SELECT t.customer_id, u.transaction_id::text AS subject, format('entries sum to %s', u.total) AS detail
      FROM unbalanced u LEFT JOIN ledger_transactions t ON t.id = u.transaction_id`,
  'inv2: cached available/held equal entry sums': `
    SELECT w.customer_id, w.customer_id AS subject,
           format('cached %s/%s, entries %s/%s', w.available, w.held, COALESCE(ce.available, 0), COALESCE(ce.held, 0))
      FROM w LEFT JOIN ce ON ce.customer_id = w.customer_id
     WHERE w.available <> COALESCE(ce.available, 0) OR w.held <> COALESCE(ce.held, 0)`,
  'inv3: available + held = Σ lots − arrears': `
    SELECT w.customer_id, w.customer_id AS subject,
           format('available+held %s, lots %s, arrears %s', w.available + w.held, COALESCE(l.total, 0), w.arrears)
      FROM w LEFT JOIN (SELECT customer_id, sum(remaining + held) AS total FROM lots GROUP BY customer_id) l
        ON l.customer_id = w.customer_id
     WHERE w.available + w.held <> COALESCE(l.total, 0) - w.arrears`,
  'inv3: lots within bounds': `
    SELECT customer_id, id::text, format('remaining %s held %s original %s', remaining, held, original)
      FROM lots WHERE remaining < 0 OR held < 0 OR remaining + held > original`,
  'inv3: each lot equals its entries': `
    SELECT l.customer_id, l.id::text,
           format('lot %s/%s, entries %s/%s', l.remaining, l.held, COALESCE(le.available, 0), COALESCE(le.held, 0))
      FROM lots l LEFT JOIN le ON le.lot_id = l.id
     WHERE l.remaining <> COALESCE(le.available, 0) OR l.held <> COALESCE(le.held, 0)`,
  'inv3: arrears equal the unassigned available entries': `
    SELECT w.customer_id, w.customer_id, format('arrears %s, unassigned %s', w.arrears, COALESCE(ce.unassigned, 0))
      FROM w LEFT JOIN ce ON ce.customer_id = w.customer_id
     WHERE -w.arrears <> COALESCE(ce.unassigned, 0)`,
  'inv4: each usage transaction debits exactly its events': `
    SELECT t.customer_id, t.id::text, format('consumed %s, events %s', COALESCE(x.consumed, 0), COALESCE(ev.s, 0))
      FROM ledger_transactions t
      LEFT JOIN (SELECT transaction_id, sum(amount) AS consumed FROM ledger_entries
                  WHERE ${IN_PAGE('customer_id')} AND account = 'consumed'
                    AND transaction_id IN (SELECT id FROM ledger_transactions
                                            WHERE ${IN_PAGE('customer_id')} AND type = 'usage')
                  GROUP BY 1) x ON x.transaction_id = t.id
      LEFT JOIN (SELECT transaction_id, sum(credits) s FROM usage_events
                  WHERE ${IN_PAGE('customer_id')} GROUP BY transaction_id) ev ON ev.transaction_id = t.id
     WHERE ${IN_PAGE('t.customer_id')} AND t.type = 'usage' AND COALESCE(x.consumed, 0) <> COALESCE(ev.s, 0)`,
  'holds: each lot is held exactly by its holds': `
    SELECT l.customer_id, l.id::text, format('lot held %s, holds %s', l.held, COALESCE(h.s, 0))
      FROM lots l LEFT JOIN (SELECT lot_id, sum(held) s FROM hl GROUP BY lot_id) h ON h.lot_id = l.id
     WHERE l.held <> COALESCE(h.s, 0)`,
  'holds: a hold holds the sum of its lots and its overdraft; a finished hold holds nothing': `
    SELECT h.customer_id, h.id, format('%s holds %s, lots %s, overdraft %s', h.status, h.held, COALESCE(x.s, 0), h.overdraft)
      FROM holds h
      LEFT JOIN (SELECT customer_id, hold_id, sum(held) s FROM hl GROUP BY 1, 2) x
        ON x.customer_id = h.customer_id AND x.hold_id = h.id
     WHERE ${IN_PAGE('h.customer_id')}
       AND (h.held <> COALESCE(x.s, 0) + h.overdraft OR (h.status <> 'active' AND h.held <> 0))`,
  'holds: credits held on no lot are the active holds’ overdraft parts': `
    SELECT w.customer_id, w.customer_id,
           format('held on no lot %s, overdraft of holds %s', COALESCE(ce.held_no_lot, 0), COALESCE(ah.overdraft, 0))
      FROM w LEFT JOIN ce ON ce.customer_id = w.customer_id LEFT JOIN ah ON ah.customer_id = w.customer_id
     WHERE COALESCE(ce.held_no_lot, 0) <> COALESCE(ah.overdraft, 0)`,
  'holds: a wallet holds what its active holds hold': `
    SELECT w.customer_id, w.customer_id, format('wallet held %s, holds %s', w.held, COALESCE(ah.held, 0))
      FROM w LEFT JOIN ah ON ah.customer_id = w.customer_id
     WHERE w.held <> COALESCE(ah.held, 0)`,
  'inv9: a succeeded payment has its purchased lot, cost basis = the charge': `
    SELECT p.customer_id, p.id,
           format('lot %s kind %s cost %s %s ref %s original %s; payment %s %s ref %s credits %s',
                  l.id, l.kind, l.cost_amount_minor, l.cost_currency, l.payment_reference, l.original,
                  p.amount_minor, p.currency, p.payment_reference, p.credits)
      FROM payments p LEFT JOIN lots l ON l.id = p.lot_id
     WHERE ${IN_PAGE('p.customer_id')} AND p.status = 'succeeded'
       AND (l.id IS NULL OR l.customer_id <> p.customer_id OR l.kind <> 'purchased'
            OR l.payment_reference IS DISTINCT FROM p.payment_reference
            OR l.cost_amount_minor IS DISTINCT FROM p.amount_minor
            OR l.cost_currency IS DISTINCT FROM p.currency OR l.original <> p.credits)`,
  'inv9: a payment that did not succeed has no lot': `
    SELECT customer_id, id, format('%s with lot %s', status, lot_id)
      FROM payments WHERE ${IN_PAGE('customer_id')} AND status <> 'succeeded' AND lot_id IS NOT NULL`,
  'lots: expired lot still holds a remainder': `
    SELECT customer_id, id::text,
           format('expired at %s, %s remaining, %s held, status %s', expires_at, remaining, held, status)
      FROM lots WHERE status = 'active' AND remaining > 0 AND expires_at < now() - make_interval(secs => $3)`,
};
/** Ledger vs the sandbox gateway, whose charges and refunds we can read (the gateway's own tables). */
const SANDBOX_CHECKS: Record<string, string> = {
  'gateway: every charge has its lot': `
    SELECT s.customer_id, s.id AS subject,
           format('charge %s %s (key %s) has no lot', s.amount_minor, s.currency, s.idempotency_key) AS detail
      FROM sandbox_charges s
     WHERE ${IN_PAGE('s.customer_id')}
       AND NOT EXISTS (SELECT 1 FROM credit_lots l WHERE l.customer_id = s.customer_id AND l.payment_reference = s.id)
       -- in flight: charged, not granted yet
       AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.gateway = 'sandbox' AND p.gateway_key = s.idempotency_key
                         AND p.status = 'pending')`,
  'gateway: every purchased lot has exactly one charge of its cost basis': `
    SELECT l.customer_id, l.id::text AS subject,
           CASE WHEN s.id IS NULL THEN format('charge %s not found at the gateway', l.payment_reference)
                ELSE format('lot cost %s %s, charge %s %s', l.cost_amount_minor, l.cost_currency, s.amount_minor, s.currency)
           END AS detail
      FROM credit_lots l
      JOIN payments p ON p.lot_id = l.id AND p.gateway = 'sandbox'
      LEFT JOIN sandbox_charges s ON s.id = l.payment_reference
     WHERE ${IN_PAGE('l.customer_id')}
       AND (s.id IS NULL OR s.amount_minor IS DISTINCT FROM l.cost_amount_minor OR s.currency IS DISTINCT FROM l.cost_currency)`,
  'gateway: refunds equal gateway refunds': `
    SELECT r.customer_id, r.id AS subject,
           format('refund %s %s ref %s, gateway %s', r.status, r.money_minor, r.refund_reference,
                  COALESCE(g.amount_minor::text, 'none')) AS detail
      FROM refunds r LEFT JOIN sandbox_refunds g ON g.id = r.refund_reference
     WHERE ${IN_PAGE('r.customer_id')} AND r.gateway = 'sandbox' AND r.status = 'succeeded' AND r.money_minor > 0
       AND (g.id IS NULL OR g.amount_minor <> r.money_minor OR g.charge_id IS DISTINCT FROM r.charge_reference)`,
  'gateway: every gateway refund has its refund': `
    SELECT s.customer_id, g.id AS subject, format('gateway refund %s of %s has no refund', g.amount_minor, g.charge_id) AS detail
      FROM sandbox_refunds g JOIN sandbox_charges s ON s.id = g.charge_id
     WHERE ${IN_PAGE('s.customer_id')}
       AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.refund_reference = g.id)
       -- in flight: refunded at the gateway, not recorded yet
       AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.charge_reference = g.charge_id AND r.status = 'pending')`,
};

/** A page's checks in one statement (one round trip): `k` indexes the names. */
function pageStatement(checks: Record<string, string>) {
  const names = Object.keys(checks);
  const sql = `WITH ${PAGE_ENTRIES}\n${Object.values(checks)
    .map((body, k) => `SELECT ${k} AS k, x.* FROM (${body}) AS x(customer_id, subject, detail)`)
    .join('\nUNION ALL\n')}`;
  return { names, sql };
}
const PAGE = pageStatement(PAGE_CHECKS);
const PAGE_WITH_SANDBOX = pageStatement({ ...PAGE_CHECKS, ...SANDBOX_CHECKS });

/** Whole-database checks, run once per reconciliation (not per page). */
const GLOBAL_CHECKS: Record<string, string> = {
  // inv4's "a replay returns the first result" needs every transaction's idempotency record: they are
  // append-only like the ledger (migration 011), which this checks, rather than probing a record per
  // transaction every night (that probe was 4× the cost of all other page checks together).
  'inv4/inv5: ledger tables and idempotency records refuse UPDATE/DELETE/TRUNCATE': `
    SELECT NULL::text AS customer_id, t.name AS subject, 'append-only trigger missing or disabled' AS detail
      FROM (VALUES ('ledger_transactions'), ('ledger_entries'), ('idempotency_keys')) AS t(name)
     WHERE (SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
             WHERE c.relname = t.name AND g.tgname LIKE '%append_only' AND g.tgenabled <> 'D') = 0
        OR (SELECT count(*) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
             WHERE c.relname = t.name AND g.tgname LIKE '%no_truncate' AND g.tgenabled <> 'D') = 0`,
  'inv9: one payment per gateway charge': `
    SELECT min(customer_id) AS customer_id, gateway || ':' || payment_reference AS subject,
           format('%s payments', count(*)) AS detail
      FROM payments WHERE payment_reference IS NOT NULL AND gateway <> 'manual'
     GROUP BY gateway, payment_reference HAVING count(*) > 1`,
};

export interface Discrepancy {
  check: string;
  customerId: string | null;
  subject: string;
  detail: string;
}

export interface Page {
  discrepancies: Discrepancy[];
  checked: Checked;
}
export type Checked = Record<'wallets' | 'lots' | 'transactions' | 'events' | 'payments', number>;

async function run(q: Queryable, checks: Record<string, string>, params: unknown[], out: Discrepancy[]) {
  for (const [check, sql] of Object.entries(checks)) {
    // Each check binds only the parameters it names ($1, $2, …).
    const used = Math.max(0, ...[...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
    const res = await q.query<{ customer_id: string | null; subject: string; detail: string }>(
      sql,
      params.slice(0, used),
    );
    for (const r of res.rows) out.push({ check, customerId: r.customer_id, subject: r.subject, detail: r.detail });
  }
}

/**
 * The next pages after `after`: each page's last customer id, for up to `count` pages of `size`
 * wallets (keyset on customer id); `end` when no wallet lies beyond them.
 */
export async function planPages(
  q: Queryable,
  o: { after: string; size: number; count: number },
): Promise<{ bounds: string[]; end: boolean }> {
  const ids = (
    await q.query<{ customer_id: string }>(
      'SELECT customer_id FROM wallets WHERE customer_id > $1 ORDER BY customer_id LIMIT $2',
      [o.after, o.size * o.count],
    )
  ).rows.map((r) => r.customer_id);
  const bounds = ids.filter((_, i) => (i + 1) % o.size === 0 || i === ids.length - 1);
  return { bounds, end: ids.length < o.size * o.count };
}

/** The checks over the wallets in (after, last]. */
export async function checkPage(
  q: Queryable,
  o: { after: string; last: string; sandbox: boolean; expiryGraceSeconds: number },
): Promise<Page> {
  const range = [o.after, o.last];
  const counts = await q.query<Record<keyof Checked, string>>(
    `SELECT (SELECT count(*) FROM wallets WHERE ${IN_PAGE('customer_id')}) AS wallets,
            (SELECT count(*) FROM credit_lots WHERE ${IN_PAGE('customer_id')}) AS lots,
            (SELECT count(*) FROM ledger_transactions WHERE ${IN_PAGE('customer_id')}) AS transactions,
            (SELECT count(*) FROM usage_events WHERE ${IN_PAGE('customer_id')}) AS events,
            (SELECT count(*) FROM payments WHERE ${IN_PAGE('customer_id')}) AS payments`,
    range,
  );
  const c = counts.rows[0]!;
  const checked: Checked = {
    wallets: Number(c.wallets),
    lots: Number(c.lots),
    transactions: Number(c.transactions),
    events: Number(c.events),
    payments: Number(c.payments),
  };
  const { names, sql } = o.sandbox ? PAGE_WITH_SANDBOX : PAGE;
  const res = await q.query<{ k: number; customer_id: string; subject: string; detail: string }>(sql, [
    ...range,
    o.expiryGraceSeconds,
  ]);
  const discrepancies = res.rows.map((r) => ({
    check: names[r.k]!,
    customerId: r.customer_id,
    subject: r.subject,
    detail: r.detail,
  }));
  return { discrepancies, checked };
}

/**
 * The whole reconciliation but the workflow checks, as one page over every wallet: the tests'
 * invariant check (db/invariants.ts) runs it after each kind of traffic, so a check that cries
 * wolf on legitimate traffic fails the suite.
 */
export async function reconcileAll(q: Queryable, o: { sandbox: boolean; expiryGraceSeconds: number }) {
  const last = (await q.query<{ m: string | null }>('SELECT max(customer_id) AS m FROM wallets')).rows[0]!.m;
  const page = last === null ? [] : (await checkPage(q, { after: '', last, ...o })).discrepancies;
  return [...page, ...(await checkGlobal(q))];
}

export async function checkGlobal(q: Queryable): Promise<Discrepancy[]> {
  const out: Discrepancy[] = [];
  await run(q, GLOBAL_CHECKS, [], out);
  return out;
}

/** Active holds of a page (their workflows are asked whether they still run). */
export async function activeHolds(q: Queryable, after: string, last: string) {
  const res = await q.query<{ customer_id: string; id: string; workflow_id: string }>(
    `SELECT customer_id, id, workflow_id FROM holds WHERE ${IN_PAGE('customer_id')} AND status = 'active'`,
    [after, last],
  );
  return res.rows;
}

// ---- the run row ----

export interface RunRow {
  id: string;
  date: string;
  workflow_id: string;
  status: 'running' | 'clean' | 'discrepancies' | 'failed';
  started_at: Date;
  finished_at: Date | null;
  checked_wallets: string;
  discrepancies: Discrepancy[];
  summary: { pagesDone: string[]; checked?: Checked; notes?: string[]; discrepancyCount?: number };
}

const COLUMNS = `id, to_char(date, 'YYYY-MM-DD') AS date, workflow_id, status, started_at, finished_at,
                 checked_wallets::text, discrepancies, summary`;

export async function startRun(q: Queryable, o: { id: string; date: string; workflowId: string }): Promise<void> {
  await q.query(
    `INSERT INTO reconciliation_runs (id, date, workflow_id) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
    [o.id, o.date, o.workflowId],
  );
}

/** Discrepancies kept in a report (all are counted). */
export const STORED_MAX = 10_000;

/** Adds a page's results once: a retried activity finds its cursor in pagesDone and adds nothing. */
export async function addPage(
  q: Queryable,
  runId: string,
  pageKey: string,
  page: { wallets: number; discrepancies: Discrepancy[]; checked: Checked; notes?: string[] },
): Promise<void> {
  await q.query(
    `UPDATE reconciliation_runs
        SET checked_wallets = checked_wallets + $3,
            -- bounded: a wholly broken ledger must not make a row of gigabytes (the count stays exact)
            discrepancies = CASE WHEN jsonb_array_length(discrepancies) >= $7 THEN discrepancies
                                 ELSE discrepancies || $4::jsonb END,
            summary = jsonb_set(
              jsonb_set(summary, '{pagesDone}', (summary->'pagesDone') || to_jsonb($2::text)),
              '{checked}',
              (SELECT jsonb_object_agg(k, COALESCE((summary->'checked'->>k)::bigint, 0) + (v #>> '{}')::bigint)
                 FROM jsonb_each($5::jsonb) AS x(k, v)))
            || jsonb_build_object('discrepancyCount',
                                  COALESCE((summary->>'discrepancyCount')::bigint, 0) + jsonb_array_length($4::jsonb))
            || CASE WHEN $6::jsonb = '[]'::jsonb THEN '{}'::jsonb
                    ELSE jsonb_build_object('notes', COALESCE(summary->'notes', '[]'::jsonb) || $6::jsonb) END
      WHERE id = $1 AND status = 'running' AND NOT (summary->'pagesDone' ? $2)`,
    [
      runId,
      pageKey,
      page.wallets,
      JSON.stringify(page.discrepancies),
      JSON.stringify(page.checked),
      JSON.stringify(page.notes ?? []),
      STORED_MAX,
    ],
  );
}

export async function finishRun(q: Queryable, runId: string, failed = false): Promise<RunRow | null> {
  const res = await q.query<RunRow>(
    `UPDATE reconciliation_runs
        SET status = CASE WHEN $2 THEN 'failed' WHEN COALESCE((summary->>'discrepancyCount')::bigint, 0) > 0 THEN 'discrepancies'
                          ELSE 'clean' END,
            finished_at = now()
      WHERE id = $1 AND status = 'running' RETURNING ${COLUMNS}`,
    [runId, failed],
  );
  return res.rows[0] ?? null;
}

export async function getRun(q: Queryable, id: string): Promise<RunRow | null> {
  const res = await q.query<RunRow>(`SELECT ${COLUMNS} FROM reconciliation_runs WHERE id = $1`, [id]);
  return res.rows[0] ?? null;
}

export async function latestRun(q: Queryable): Promise<RunRow | null> {
  const res = await q.query<RunRow>(
    `SELECT ${COLUMNS} FROM reconciliation_runs ORDER BY started_at DESC, id DESC LIMIT 1`,
  );
  return res.rows[0] ?? null;
}
