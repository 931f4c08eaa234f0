import {
  GatewayError,
  type Charge,
  type ChargeRequest,
  type PaymentGateway,
  type Refund,
  type RefundRequest,
} from './gateway';

/**
 * Offline payments (bank transfer, invoice): never charges anything. A "charge" records the
 * reference the caller gives; without one it is refused. Top-ups cannot use it (no reference).
 */
export class ManualGateway implements PaymentGateway {
  readonly name = 'manual' as const;

  acceptsPaymentMethod(): boolean {
    return true;
  }

  charge(req: ChargeRequest): Promise<Charge> {
    if (!req.offlineReference)
      return Promise.reject(
        new GatewayError('permanent', 'reference_required', 'the manual gateway needs the offline paymentReference'),
      );
    return Promise.resolve({
      reference: req.offlineReference,
      amountMinor: req.amountMinor,
      currency: req.currency.toUpperCase(),
      status: 'succeeded',
    });
  }

  refund(req: RefundRequest): Promise<Refund> {
    // Recorded only: the money goes back offline.
    return Promise.resolve({
      reference: `manual_refund_${req.idempotencyKey.replace(/[^A-Za-z0-9_.-]/g, '_')}`,
      chargeReference: req.chargeReference,
      amountMinor: req.amountMinor,
      status: 'succeeded',
    });
  }

  findRefund(): Promise<Refund | null> {
    return Promise.resolve(null); // a manual refund is recorded by its one call; nothing to look up
  }

  findCharge(): Promise<Charge | null> {
    return Promise.resolve(null); // nothing is ever charged behind our back
  }
}
