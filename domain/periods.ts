/** Period arithmetic for recurring allowances: pure, UTC, calendar-aware. */
export type Every = 'day' | 'week' | 'month';

/** Adds one period. Months keep the day of month, clamped to the month's end (Jan 31 → Feb 28/29). */
export function addPeriod(from: Date, every: Every, times = 1): Date {
  if (every === 'day') return new Date(from.getTime() + times * 86_400_000);
  if (every === 'week') return new Date(from.getTime() + times * 7 * 86_400_000);
  const y = from.getUTCFullYear();
  const m = from.getUTCMonth() + times;
  const lastDay = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
  const d = new Date(from.getTime());
  d.setUTCFullYear(y, m, Math.min(from.getUTCDate(), lastDay));
  return d;
}

/** At a period boundary: what of the unused part rolls over (up to the cap) and what expires. */
export function rolloverSplit(unused: bigint, cap: bigint | null): { rolled: bigint; expired: bigint } {
  const limit = cap ?? 0n;
  const rolled = unused < limit ? unused : limit;
  return { rolled, expired: unused - rolled };
}
