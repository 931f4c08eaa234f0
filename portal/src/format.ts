// Pure helpers of the portal page (no DOM), unit-tested in test/unit/portal-format.test.ts.
// Amounts stay strings or bigint micro-credits: a credit amount never passes through a float.

/** What a portal token says about itself (unverified: the API checks the signature). */
export function decodeToken(token: string): { customerId: string; expiresAt: Date } | null {
  const m = /^cfpt_([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+$/.exec(token);
  if (!m) return null;
  let text: string;
  try {
    text = atob(m[1]!.replace(/-/g, '+').replace(/_/g, '/'));
  } catch {
    return null;
  }
  const p = /^([0-9]{1,12}):([A-Za-z0-9_.:-]{1,128})$/.exec(text);
  return p ? { customerId: p[2]!, expiresAt: new Date(Number(p[1]) * 1000) } : null;
}

const DECIMAL = /^(-?)([0-9]+)(?:\.([0-9]{1,6}))?$/;

/** A credits string of the API ("-12.5") as micro-credits; null when it is not one. */
export function toMicro(s: string): bigint | null {
  const m = DECIMAL.exec(s);
  if (!m) return null;
  const v = BigInt(m[2]!) * 1_000_000n + BigInt((m[3] ?? '').padEnd(6, '0'));
  return m[1] ? -v : v;
}

/** Micro-credits as the API writes credits: no trailing zeros, no exponent. */
export function formatMicro(v: bigint): string {
  const neg = v < 0n;
  const a = neg ? -v : v;
  const frac = (a % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${a / 1_000_000n}${frac ? `.${frac}` : ''}`;
}

/** Whole pixels of `v` on a scale where `max` is `px` (exact integer division, no floats). */
export function scale(v: bigint, max: bigint, px: number): number {
  if (max <= 0n || v <= 0n) return 0;
  return Number((v * BigInt(px)) / max);
}

/** The last `n` UTC days, oldest first, as YYYY-MM-DD. */
export function lastDays(now: Date, n: number): string[] {
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  return Array.from({ length: n }, (_, i) => new Date(today - (n - 1 - i) * 86_400_000).toISOString().slice(0, 10));
}

export interface UsageRow {
  meter?: string;
  day?: string;
  credits: string;
}

/** Usage rows (meter, day) as credits per meter per day (µc), meters in first-seen order. */
export function usageByDay(rows: readonly UsageRow[], days: readonly string[]) {
  const meters: string[] = [];
  const cells = new Map<string, bigint>();
  for (const r of rows) {
    const meter = r.meter ?? '';
    if (!r.day || !days.includes(r.day)) continue;
    if (!meters.includes(meter)) meters.push(meter);
    const key = `${r.day} ${meter}`;
    cells.set(key, (cells.get(key) ?? 0n) + (toMicro(r.credits) ?? 0n));
  }
  const at = (day: string, meter: string) => cells.get(`${day} ${meter}`) ?? 0n;
  const totals = days.map((d) => meters.reduce((s, m) => s + at(d, m), 0n));
  const max = totals.reduce((m, t) => (t > m ? t : m), 0n);
  return { meters, at, totals, max };
}

export interface LedgerEntry {
  account: string;
  lotId: string | null;
  lotKind?: string | null;
  amount: string;
}

/** The change a transaction made to available credits (Σ of its `available` entries), exactly. */
export function availableChange(entries: readonly LedgerEntry[]): string {
  return formatMicro(
    entries.filter((e) => e.account === 'available').reduce((s, e) => s + (toMicro(e.amount) ?? 0n), 0n),
  );
}

/** The lots (grants) a transaction drew credits from: its debits of `available` and `held` per lot. */
export function drawnFrom(entries: readonly LedgerEntry[]): { lotId: string; kind: string; amount: string }[] {
  return entries
    .filter((e) => e.lotId && (e.account === 'available' || e.account === 'held') && e.amount.startsWith('-'))
    .map((e) => ({ lotId: e.lotId!, kind: e.lotKind ?? 'lot', amount: e.amount.slice(1) }));
}

/** A lot id short enough for a table cell and still telling lots apart. */
export const shortId = (id: string) => id.slice(0, 8);
