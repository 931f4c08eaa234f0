import { MICROS_PER_CREDIT } from '../domain/amount';
import { decimal } from '../domain/decimal';

/** ISO 4217 codes the runtime knows (Intl's list): an unknown currency is refused at the boundary. */
const CURRENCIES = new Set(Intl.supportedValuesOf('currency'));
export const isKnownCurrency = (c: string) => /^[A-Z]{3}$/.test(c) && CURRENCIES.has(c);

/** Larger charges than this are refused (Stripe's own limit is far below; int8 and JSON stay exact). */
export const MAX_CHARGE_MINOR = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The charge for `micros` credits at `unitPrice` minor units per credit (a decimal string, like
 * Stripe's unit_amount_decimal): ceil(credits × unitPrice). Exact: bigint arithmetic only.
 */
export function chargeFor(micros: bigint, unitPrice: string): bigint {
  const p = decimal(unitPrice);
  const num = micros * p.m;
  const den = MICROS_PER_CREDIT * 10n ** BigInt(p.scale);
  return (num + den - 1n) / den;
}
