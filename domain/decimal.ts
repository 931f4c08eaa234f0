/**
 * Exact non-negative decimals as (mantissa, scale): value = m / 10^scale. No floats anywhere.
 * Used for usage quantities and rate-card prices, which may be finer than a micro-credit.
 */
export interface Decimal {
  m: bigint;
  scale: number;
}

export const MAX_SCALE = 12;
const DECIMAL = /^(0|[1-9][0-9]{0,17})(?:\.([0-9]{1,12}))?$/;

export function parseDecimal(input: unknown): { ok: true; value: Decimal } | { ok: false; reason: string } {
  if (typeof input !== 'string') return { ok: false, reason: 'must be a decimal string' };
  const m = DECIMAL.exec(input);
  if (!m)
    return { ok: false, reason: 'must be a non-negative decimal string (≤ 18 integer and ≤ 12 fractional digits)' };
  const frac = m[2] ?? '';
  return { ok: true, value: { m: BigInt(m[1]! + frac), scale: frac.length } };
}

export function decimal(input: string): Decimal {
  const r = parseDecimal(input);
  if (!r.ok) throw new RangeError(`invalid decimal ${JSON.stringify(input)}: ${r.reason}`);
  return r.value;
}

const pow10 = (n: number) => 10n ** BigInt(n);

export function addDecimal(a: Decimal, b: Decimal): Decimal {
  const scale = Math.max(a.scale, b.scale);
  return { m: a.m * pow10(scale - a.scale) + b.m * pow10(scale - b.scale), scale };
}

export function compareDecimal(a: Decimal, b: Decimal): number {
  const scale = Math.max(a.scale, b.scale);
  const x = a.m * pow10(scale - a.scale);
  const y = b.m * pow10(scale - b.scale);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Shortest exact text: trailing fractional zeros dropped. */
export function formatDecimal(d: Decimal): string {
  const s = d.m.toString().padStart(d.scale + 1, '0');
  if (d.scale === 0) return s;
  const whole = s.slice(0, s.length - d.scale);
  const frac = s.slice(s.length - d.scale).replace(/0+$/, '');
  return frac ? `${whole}.${frac}` : whole;
}

/** ceil(n / d) for n ≥ 0, d > 0. */
export function ceilDiv(n: bigint, d: bigint): bigint {
  return (n + d - 1n) / d;
}

export { pow10 };
