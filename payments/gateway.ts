/**
 * One interface for every payment gateway (stripe, manual, sandbox). Amounts are integer minor
 * units as bigint. Every call that moves money carries our idempotency key; adapters pass it to
 * the gateway and, because some gateways (or emulators) ignore keys, can find a charge by it.
 */
export interface ChargeRequest {
  /** Ours, derived from the workflow id (and top-up number): the same on every retry. */
  idempotencyKey: string;
  customerId: string;
  /** The gateway's payment method id (e.g. `pm_card_visa`). */
  paymentMethod: string;
  /** The gateway's customer id (Stripe `cus_…`), when the method is attached to one. */
  gatewayCustomerId?: string;
  amountMinor: bigint;
  /** ISO 4217, lower or upper case; adapters normalise. */
  currency: string;
  description?: string;
  /** `manual` only: the offline payment's reference (bank transfer id, invoice number). */
  offlineReference?: string;
}

export interface Charge {
  /** The gateway's id for the charge (PaymentIntent id): the lot's payment reference. */
  reference: string;
  amountMinor: bigint;
  currency: string;
  status: 'succeeded';
}

export interface RefundRequest {
  idempotencyKey: string;
  /** The charge's reference. */
  chargeReference: string;
  amountMinor: bigint;
  reason?: string;
}

export interface Refund {
  reference: string;
  chargeReference: string;
  amountMinor: bigint;
  status: 'succeeded';
}

/** What the gateway itself holds, for reconciliation: every succeeded charge or refund, with our key. */
export interface GatewayRecord {
  kind: 'charge' | 'refund';
  reference: string;
  /** A refund's charge. */
  chargeReference?: string;
  amountMinor: bigint;
  currency: string;
  /** The key we sent (null: not made by creditflow). */
  idempotencyKey: string | null;
  /** Ours, as sent with the charge (null: not made by creditflow). */
  customerId: string | null;
  createdAt: Date;
}

export type GatewayErrorKind = 'retryable' | 'permanent';

/**
 * Every adapter error is one of these: `retryable` (connection, timeout, 5xx, 429, a flaky
 * test card) is retried with the same idempotency key; `permanent` (a decline, a bad request)
 * is final. `code` is the gateway's (e.g. `card_declined`), for the failure reason.
 */
export class GatewayError extends Error {
  constructor(
    readonly kind: GatewayErrorKind,
    readonly code: string,
    message: string,
    readonly declineCode?: string,
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}

export const isGatewayError = (err: unknown): err is GatewayError => err instanceof GatewayError;

export type GatewayName = 'stripe' | 'manual' | 'sandbox';

export interface PaymentGateway {
  readonly name: GatewayName;
  /** Whether this gateway could charge the method (the sandbox knows its test methods); absent: any. */
  acceptsPaymentMethod?(paymentMethod: string): boolean;
  /** Charges once per idempotency key: a retry with the same key returns the first charge. */
  charge(req: ChargeRequest): Promise<Charge>;
  /** Refunds once per idempotency key. */
  refund(req: RefundRequest): Promise<Refund>;
  /** The refund made under this key (succeeded or still pending), or null if the gateway has none. */
  findRefund(q: { idempotencyKey: string; chargeReference: string }): Promise<Refund | null>;
  /** The succeeded charge made under this key, or null if there is none (yet). */
  findCharge(q: { idempotencyKey: string; customerId: string; gatewayCustomerId?: string }): Promise<Charge | null>;
  /**
   * Reconciliation asks the gateway, not our copy: every succeeded charge and refund created at or
   * after `since`. Absent: the gateway cannot be checked this way (the sandbox is checked in SQL).
   */
  listSince?(since: Date): AsyncIterable<GatewayRecord>;
}
