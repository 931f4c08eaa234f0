import { randomUUID } from 'node:crypto';
import type { Pool } from '../db/pool';
import { withTransaction } from '../db/pool';
import { requestHash } from '../lib/hash';
import {
  GatewayError,
  type Charge,
  type ChargeRequest,
  type PaymentGateway,
  type Refund,
  type RefundRequest,
} from './gateway';

/** The sandbox's test payment methods (they mirror Stripe's test tokens). */
export const SANDBOX_METHODS = [
  'pm_card_visa',
  'pm_card_chargeDeclined',
  'pm_card_flaky',
  'pm_card_unavailable',
  'pm_card_refundFails',
] as const;
const KNOWN = new Set<string>(SANDBOX_METHODS);

/** How many attempts of each charge pm_card_flaky fails (retryably) before it succeeds. */
const FLAKY_FAILURES = 2;

interface ChargeRow {
  id: string;
  request_hash: string;
  payment_method: string;
  amount_minor: string;
  currency: string;
  refunded_minor: string;
}

const toCharge = (r: ChargeRow): Charge => ({
  reference: r.id,
  amountMinor: BigInt(r.amount_minor),
  currency: r.currency,
  status: 'succeeded',
});

/**
 * A built-in test gateway for development and demos: no account anywhere. It keeps its charges
 * and refunds in our database and honours idempotency keys like Stripe: the same key with the
 * same request returns the first charge; with another request it is refused (permanently).
 */
export class SandboxGateway implements PaymentGateway {
  readonly name = 'sandbox' as const;

  constructor(private readonly pool: Pool) {}

  acceptsPaymentMethod(pm: string): boolean {
    return KNOWN.has(pm);
  }

  async charge(req: ChargeRequest): Promise<Charge> {
    const hash = requestHash({
      customerId: req.customerId,
      paymentMethod: req.paymentMethod,
      amountMinor: req.amountMinor.toString(),
      currency: req.currency.toUpperCase(),
    });
    // Counted in its own statement: a failed attempt still counts (pm_card_flaky).
    const attempt = await this.countAttempt(req.idempotencyKey);
    return withTransaction(this.pool, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 7))', [req.idempotencyKey]);
      const prior = await tx.query<ChargeRow>('SELECT * FROM sandbox_charges WHERE idempotency_key = $1', [
        req.idempotencyKey,
      ]);
      if (prior.rows[0]) {
        if (prior.rows[0].request_hash !== hash)
          throw new GatewayError('permanent', 'idempotency_error', 'key reused with a different request');
        return toCharge(prior.rows[0]);
      }
      switch (req.paymentMethod) {
        case 'pm_card_visa':
        case 'pm_card_refundFails':
          break;
        case 'pm_card_chargeDeclined':
          throw new GatewayError('permanent', 'card_declined', 'Your card was declined.', 'generic_decline');
        case 'pm_card_flaky':
          if (attempt <= FLAKY_FAILURES)
            throw new GatewayError('retryable', 'processing_error', `flaky card: attempt ${attempt} failed`);
          break;
        case 'pm_card_unavailable':
          throw new GatewayError('retryable', 'api_connection_error', 'the sandbox gateway is unavailable');
        default:
          throw new GatewayError('permanent', 'resource_missing', `no such payment method ${req.paymentMethod}`);
      }
      if (req.amountMinor <= 0n) throw new GatewayError('permanent', 'amount_too_small', 'amount must be positive');
      const r = await tx.query<ChargeRow>(
        `INSERT INTO sandbox_charges (id, idempotency_key, request_hash, customer_id, payment_method, amount_minor, currency)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
        [
          `sbx_ch_${randomUUID().replace(/-/g, '')}`,
          req.idempotencyKey,
          hash,
          req.customerId,
          req.paymentMethod,
          req.amountMinor.toString(),
          req.currency.toUpperCase(),
        ],
      );
      return toCharge(r.rows[0]!);
    });
  }

  async refund(req: RefundRequest): Promise<Refund> {
    const hash = requestHash({ charge: req.chargeReference, amountMinor: req.amountMinor.toString() });
    return withTransaction(this.pool, async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 7))', [req.idempotencyKey]);
      const prior = await tx.query<{ id: string; request_hash: string; charge_id: string; amount_minor: string }>(
        'SELECT * FROM sandbox_refunds WHERE idempotency_key = $1',
        [req.idempotencyKey],
      );
      const p = prior.rows[0];
      if (p) {
        if (p.request_hash !== hash)
          throw new GatewayError('permanent', 'idempotency_error', 'key reused with a different request');
        return {
          reference: p.id,
          chargeReference: p.charge_id,
          amountMinor: BigInt(p.amount_minor),
          status: 'succeeded',
        };
      }
      const c = await tx.query<ChargeRow>('SELECT * FROM sandbox_charges WHERE id = $1 FOR UPDATE', [
        req.chargeReference,
      ]);
      const charge = c.rows[0];
      if (!charge) throw new GatewayError('permanent', 'resource_missing', `no such charge ${req.chargeReference}`);
      if (charge.payment_method === 'pm_card_refundFails')
        throw new GatewayError('permanent', 'refund_failed', 'the card issuer refused the refund');
      if (req.amountMinor <= 0n || BigInt(charge.refunded_minor) + req.amountMinor > BigInt(charge.amount_minor))
        throw new GatewayError('permanent', 'amount_too_large', 'refund exceeds what is left of the charge');
      const id = `sbx_re_${randomUUID().replace(/-/g, '')}`;
      await tx.query(
        `INSERT INTO sandbox_refunds (id, idempotency_key, request_hash, charge_id, amount_minor) VALUES ($1, $2, $3, $4, $5)`,
        [id, req.idempotencyKey, hash, charge.id, req.amountMinor.toString()],
      );
      await tx.query('UPDATE sandbox_charges SET refunded_minor = refunded_minor + $2 WHERE id = $1', [
        charge.id,
        req.amountMinor.toString(),
      ]);
      return { reference: id, chargeReference: charge.id, amountMinor: req.amountMinor, status: 'succeeded' };
    });
  }

  async findRefund(q: { idempotencyKey: string }): Promise<Refund | null> {
    const r = await this.pool.query<{ id: string; charge_id: string; amount_minor: string }>(
      'SELECT id, charge_id, amount_minor FROM sandbox_refunds WHERE idempotency_key = $1',
      [q.idempotencyKey],
    );
    const row = r.rows[0];
    return row
      ? {
          reference: row.id,
          chargeReference: row.charge_id,
          amountMinor: BigInt(row.amount_minor),
          status: 'succeeded',
        }
      : null;
  }

  async findCharge(q: { idempotencyKey: string }): Promise<Charge | null> {
    const r = await this.pool.query<ChargeRow>('SELECT * FROM sandbox_charges WHERE idempotency_key = $1', [
      q.idempotencyKey,
    ]);
    return r.rows[0] ? toCharge(r.rows[0]) : null;
  }

  private async countAttempt(key: string): Promise<number> {
    const r = await this.pool.query<{ attempts: number }>(
      `INSERT INTO sandbox_attempts (idempotency_key, attempts) VALUES ($1, 1)
       ON CONFLICT (idempotency_key) DO UPDATE SET attempts = sandbox_attempts.attempts + 1 RETURNING attempts`,
      [key],
    );
    return r.rows[0]!.attempts;
  }
}
