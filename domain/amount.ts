/**
 * The one codec between decimal credit strings (API) and bigint micro-credits (inside).
 * 1 credit = 1,000,000 µc. A JS number never carries an amount.
 */
export const MICROS_PER_CREDIT = 1_000_000n;
/** 9,000,000,000,000 credits: the largest amount the API accepts (fits in int8 as µc). */
export const MAX_CREDITS_MICROS = 9_000_000_000_000n * MICROS_PER_CREDIT;

const DECIMAL = /^(-?)(0|[1-9][0-9]*)(?:\.([0-9]{1,6}))?$/;

export type ParseResult = { ok: true; value: bigint } | { ok: false; reason: string };

/** Parses "1500", "0.000125" into µc. Rejects exponents, signs (unless allowNegative), >6 decimals, > max. */
export function parseCredits(input: unknown, opts: { allowNegative?: boolean } = {}): ParseResult {
  if (typeof input !== 'string') return { ok: false, reason: 'must be a decimal string' };
  const m = DECIMAL.exec(input);
  if (!m) {
    if (/^-?\d+\.\d{7,}$/.test(input)) return { ok: false, reason: 'at most 6 decimal places' };
    return { ok: false, reason: 'must be a decimal string like "12.5" (no exponent, sign or spaces)' };
  }
  const [, sign, whole, frac = ''] = m;
  if (sign === '-' && !opts.allowNegative) return { ok: false, reason: 'must not be negative' };
  const micros = BigInt(whole!) * MICROS_PER_CREDIT + BigInt(frac.padEnd(6, '0'));
  if (micros > MAX_CREDITS_MICROS) return { ok: false, reason: 'exceeds 9,000,000,000,000 credits' };
  if (sign === '-' && micros === 0n) return { ok: false, reason: 'negative zero is not a valid amount' };
  return { ok: true, value: sign === '-' ? -micros : micros };
}

/** Like parseCredits but throws; for trusted inputs (config, tests). */
export function credits(input: string): bigint {
  const r = parseCredits(input, { allowNegative: true });
  if (!r.ok) throw new RangeError(`invalid credit amount ${JSON.stringify(input)}: ${r.reason}`);
  return r.value;
}

/** Prints µc as the shortest exact decimal string: 1500000000n → "1500", 125n → "0.000125". */
export function formatCredits(micros: bigint): string {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  const whole = abs / MICROS_PER_CREDIT;
  const frac = (abs % MICROS_PER_CREDIT).toString().padStart(6, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${whole}${frac ? `.${frac}` : ''}`;
}

/** Parses pg's int8 text (always an integer string) into a bigint. */
export function int8(value: string | number | bigint | null | undefined): bigint {
  if (value === null || value === undefined) return 0n;
  return BigInt(value);
}
