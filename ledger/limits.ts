import { formatCredits, MAX_CREDITS_MICROS } from '../domain/amount';
import { DomainError } from '../domain/errors';

/**
 * Refuses, before anything is written, a movement that would take a balance outside what the API
 * can express (±9,000,000,000,000 credits). Keeps every cached sum, and the reconciliation's sums
 * of them, inside int8 instead of failing in Postgres with an overflow (a 500).
 */
export function ensureFits(what: string, value: bigint): void {
  if (value > MAX_CREDITS_MICROS || value < -MAX_CREDITS_MICROS) {
    throw new DomainError('AmountTooLarge', `${what} would exceed 9,000,000,000,000 credits`, {
      limit: formatCredits(MAX_CREDITS_MICROS),
    });
  }
}
