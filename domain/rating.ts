import { MAX_CREDITS_MICROS } from './amount';
import { ceilDiv, pow10, type Decimal } from './decimal';

/**
 * Rating: pure functions. A rule reads "`credits` credits per `per` units of `meter` where the
 * event's dimensions match". Each event is rounded UP to the next micro-credit, so splitting
 * usage across events never costs less than sending it as one.
 */
export interface RateRule {
  meter: string;
  /** name → exact value, or "*" (any value, but the dimension must be present). */
  dimensions: Record<string, string>;
  credits: Decimal;
  per: Decimal;
}

export interface RateCardVersion {
  name: string;
  version: number;
  effectiveFrom: Date;
  rules: RateRule[];
}

export type RateOutcome =
  | { ok: true; micros: bigint; rule: RateRule }
  | { ok: false; reason: 'unknown_meter' | 'no_rate' | 'too_large'; detail: string };

/** The matching rule naming the most dimensions wins; then the most exact matches; then card order. */
export function findRule(rules: readonly RateRule[], meter: string, dims: Record<string, string>): RateRule | null {
  let best: RateRule | null = null;
  let bestScore = [-1, -1];
  for (const r of rules) {
    if (r.meter !== meter) continue;
    let exact = 0;
    let ok = true;
    for (const [k, v] of Object.entries(r.dimensions)) {
      const have = dims[k];
      if (have === undefined || (v !== '*' && v !== have)) {
        ok = false;
        break;
      }
      if (v !== '*') exact++;
    }
    if (!ok) continue;
    const score = [Object.keys(r.dimensions).length, exact];
    if (score[0]! > bestScore[0]! || (score[0] === bestScore[0] && score[1]! > bestScore[1]!)) {
      best = r;
      bestScore = score;
    }
  }
  return best;
}

/** µc = ceil(quantity × credits × 10^6 / per), computed exactly in bigint. */
export function priceMicros(quantity: Decimal, rule: Pick<RateRule, 'credits' | 'per'>): bigint {
  const num = quantity.m * rule.credits.m * 1_000_000n * pow10(rule.per.scale);
  const den = pow10(quantity.scale + rule.credits.scale) * rule.per.m;
  return ceilDiv(num, den);
}

export function rateEvent(
  rules: readonly RateRule[],
  e: { meter: string; quantity: Decimal; dimensions: Record<string, string> },
): RateOutcome {
  if (!rules.some((r) => r.meter === e.meter)) {
    return { ok: false, reason: 'unknown_meter', detail: `no rate card rule prices meter ${e.meter}` };
  }
  const rule = findRule(rules, e.meter, e.dimensions);
  if (!rule) return { ok: false, reason: 'no_rate', detail: `no rule for meter ${e.meter} matches these dimensions` };
  // Published cards refuse per = 0; a stored one must still price nothing rather than throw.
  if (rule.per.m <= 0n) return { ok: false, reason: 'no_rate', detail: `the rule for meter ${e.meter} has per 0` };
  const micros = priceMicros(e.quantity, rule);
  if (micros > MAX_CREDITS_MICROS)
    return { ok: false, reason: 'too_large', detail: 'rated amount exceeds the maximum' };
  return { ok: true, micros, rule };
}

/** The version in force at `at`: the latest effectiveFrom ≤ at (then the highest version). */
export function versionAt<V extends Pick<RateCardVersion, 'effectiveFrom' | 'version'>>(
  versions: readonly V[],
  at: Date,
): V | null {
  let best: V | null = null;
  for (const v of versions) {
    if (v.effectiveFrom.getTime() > at.getTime()) continue;
    if (
      !best ||
      v.effectiveFrom.getTime() > best.effectiveFrom.getTime() ||
      (v.effectiveFrom.getTime() === best.effectiveFrom.getTime() && v.version > best.version)
    ) {
      best = v;
    }
  }
  return best;
}
