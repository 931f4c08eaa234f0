import type { Queryable } from './queryable';

/** Rules as stored (and served): decimal strings, exactly what was published. */
export interface StoredRule {
  meter: string;
  dimensions: Record<string, string>;
  credits: string;
  per: string;
}

export interface RateCardRow {
  name: string;
  version: number;
  effectiveFrom: Date;
  rules: StoredRule[];
  createdAt: Date;
}

interface Raw {
  name: string;
  version: number;
  effective_from: Date;
  rules: StoredRule[];
  created_at: Date;
}
const toRow = (r: Raw): RateCardRow => ({
  name: r.name,
  version: r.version,
  effectiveFrom: r.effective_from,
  rules: r.rules,
  createdAt: r.created_at,
});

/** Publishes the next version of a card; versions of one name are numbered under an advisory lock. */
export async function insertRateCardVersion(
  tx: Queryable,
  c: { name: string; effectiveFrom: Date; rules: StoredRule[] },
): Promise<RateCardRow> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('rate-card:' || $1, 0))`, [c.name]);
  const res = await tx.query<Raw>(
    `INSERT INTO rate_cards (name, version, effective_from, rules)
     SELECT $1, COALESCE(max(version), 0) + 1, $2, $3 FROM rate_cards WHERE name = $1
     RETURNING *`,
    [c.name, c.effectiveFrom, JSON.stringify(c.rules)],
  );
  return toRow(res.rows[0]!);
}

export async function getRateCard(q: Queryable, name: string, version?: number): Promise<RateCardRow | null> {
  const res = await q.query<Raw>(
    version === undefined
      ? `SELECT * FROM rate_cards WHERE name = $1 ORDER BY version DESC LIMIT 1`
      : `SELECT * FROM rate_cards WHERE name = $1 AND version = $2`,
    version === undefined ? [name] : [name, version],
  );
  return res.rows[0] ? toRow(res.rows[0]) : null;
}

/** Version headers (no rules) of the named cards: cheap, read on every batch. */
export async function listVersionHeaders(
  q: Queryable,
  names: readonly string[],
): Promise<{ name: string; version: number; effectiveFrom: Date }[]> {
  const res = await q.query<{ name: string; version: number; effective_from: Date }>(
    `SELECT name, version, effective_from FROM rate_cards WHERE name = ANY($1::text[])`,
    [names],
  );
  return res.rows.map((r) => ({ name: r.name, version: r.version, effectiveFrom: r.effective_from }));
}

export async function getRules(q: Queryable, name: string, version: number): Promise<StoredRule[] | null> {
  const res = await q.query<{ rules: StoredRule[] }>(`SELECT rules FROM rate_cards WHERE name = $1 AND version = $2`, [
    name,
    version,
  ]);
  return res.rows[0]?.rules ?? null;
}

export async function setCustomerRateCard(q: Queryable, customerId: string, name: string): Promise<void> {
  await q.query(
    `INSERT INTO customer_rate_cards (customer_id, card_name) VALUES ($1, $2)
     ON CONFLICT (customer_id) DO UPDATE SET card_name = EXCLUDED.card_name, updated_at = now()`,
    [customerId, name],
  );
}

export async function customerRateCards(q: Queryable, customerIds: readonly string[]): Promise<Map<string, string>> {
  const res = await q.query<{ customer_id: string; card_name: string }>(
    `SELECT customer_id, card_name FROM customer_rate_cards WHERE customer_id = ANY($1::text[])`,
    [customerIds],
  );
  return new Map(res.rows.map((r) => [r.customer_id, r.card_name]));
}
