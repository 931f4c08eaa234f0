/**
 * The closed set of domain errors. The API maps them to HTTP in one place (api/problem.ts);
 * activities map them to non-retryable ApplicationFailures.
 */
export type DomainErrorCode =
  | 'CustomerNotFound'
  | 'CustomerConflict'
  | 'LotNotFound'
  | 'LotNotActive'
  | 'InsufficientCredits'
  | 'IdempotencyConflict'
  | 'IdempotencyInFlight'
  | 'InvalidRequest'
  | 'WalletFrozen'
  | 'HoldNotFound'
  | 'HoldNotActive'
  | 'HoldExists'
  | 'HoldExpired'
  | 'AmountTooLarge'
  | 'NotRefundable'
  | 'RefundNotFound'
  | 'EventNotFound'
  | 'AlreadyCorrected';

export class DomainError extends Error {
  constructor(
    readonly code: DomainErrorCode,
    message: string,
    readonly details: Record<string, string> = {},
  ) {
    super(message);
    this.name = code;
  }
}

export const customerNotFound = (id: string) => new DomainError('CustomerNotFound', `customer ${id} does not exist`);
export const lotNotFound = (id: string) => new DomainError('LotNotFound', `lot ${id} does not exist`);
export const idempotencyConflict = (key: string) =>
  new DomainError('IdempotencyConflict', `idempotency key ${key} was already used with a different request`);
export const idempotencyInFlight = (key: string) =>
  new DomainError('IdempotencyInFlight', `a request with idempotency key ${key} is still in flight`);

/** Errors a retry can fix (the caller may try again); all others are final. */
export const isRetryable = (e: DomainError) => e.code === 'IdempotencyInFlight';
