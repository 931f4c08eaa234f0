import Stripe from 'stripe';
import {
  GatewayError,
  type Charge,
  type ChargeRequest,
  type GatewayName,
  type GatewayRecord,
  type PaymentGateway,
  type Refund,
  type RefundRequest,
} from './gateway';

export interface StripeGatewayOptions {
  secretKey: string;
  /** Where the API is, e.g. `http://127.0.0.1:8420` for an emulator; Stripe's own when absent. */
  apiBase?: string;
  /** Per request; the client's default (80 s) when absent. */
  timeoutMs?: number;
}

const KEY = 'creditflow_key';
/** A lookup pages through at most this many objects (see findCharge). */
const MAX_SCAN = 1000;

/**
 * The official client, with our idempotency key on every POST. Before every POST the adapter
 * also looks the object up by that key (in metadata): Stripe dedupes by the Idempotency-Key
 * header, but emulators such as localstripe ignore it, and a retry after a lost reply must not
 * charge twice there either.
 */
export class StripeGateway implements PaymentGateway {
  readonly name: GatewayName = 'stripe';
  private readonly stripe: Stripe;

  constructor(opts: StripeGatewayOptions) {
    const base = opts.apiBase === undefined ? undefined : new URL(opts.apiBase);
    if (base && base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new Error(`STRIPE_API_BASE must be http(s): ${opts.apiBase}`);
    }
    this.stripe = new Stripe(opts.secretKey, {
      maxNetworkRetries: 0, // workflows retry, with the same key and a lookup first
      httpClient: withoutSilentRetry(Stripe.createNodeHttpClient()),
      ...(opts.timeoutMs !== undefined && { timeout: opts.timeoutMs }),
      ...(base && {
        protocol: base.protocol === 'https:' ? 'https' : 'http',
        host: base.hostname,
        port: base.port || (base.protocol === 'https:' ? 443 : 80),
      }),
    });
  }

  async charge(req: ChargeRequest): Promise<Charge> {
    const amount = toStripeAmount(req.amountMinor);
    const existing = await this.findCharge(req);
    if (existing) return existing;
    const pi = await call(() =>
      this.stripe.paymentIntents.create(
        {
          amount,
          currency: req.currency.toLowerCase(),
          customer: req.gatewayCustomerId,
          payment_method: req.paymentMethod,
          off_session: true,
          confirm: true,
          metadata: { [KEY]: req.idempotencyKey, creditflow_customer: req.customerId },
          description: req.description,
        },
        { idempotencyKey: req.idempotencyKey },
      ),
    );
    // requires_action (3-D Secure) cannot be completed off session.
    if (pi.status !== 'succeeded') {
      throw new GatewayError('permanent', pi.status, `PaymentIntent ${pi.id} is ${pi.status}`);
    }
    return toCharge(pi);
  }

  /**
   * Pages through PaymentIntents and matches our key in metadata: localstripe rejects list
   * filters (`customer`, `created`), so the match is client-side, with or without a gateway
   * customer. Real Stripe lists newest first (and dedupes by the header anyway); localstripe
   * lists oldest first, so MAX_SCAN bounds how many objects one emulator run may hold.
   */
  async findCharge(q: Parameters<PaymentGateway['findCharge']>[0]): Promise<Charge | null> {
    const pi = await this.scan(this.stripe.paymentIntents.list({ limit: 100 }), q.idempotencyKey, 'succeeded');
    return pi ? toCharge(pi) : null;
  }

  async refund(req: RefundRequest): Promise<Refund> {
    const amount = toStripeAmount(req.amountMinor);
    const refunds = this.stripe.refunds.list({ payment_intent: req.chargeReference, limit: 100 });
    const refund =
      (await this.scan(refunds, req.idempotencyKey)) ??
      (await call(() =>
        this.stripe.refunds.create(
          {
            payment_intent: req.chargeReference,
            amount,
            // Stripe's `reason` is an enum; ours is free text.
            metadata: { [KEY]: req.idempotencyKey, ...(req.reason !== undefined && { creditflow_reason: req.reason }) },
          },
          { idempotencyKey: req.idempotencyKey },
        ),
      ));
    if (refund.status === 'succeeded') {
      return {
        reference: refund.id,
        chargeReference: req.chargeReference,
        amountMinor: BigInt(refund.amount),
        status: 'succeeded',
      };
    }
    // A pending refund is found by its key on the retry, once it has settled.
    const kind = refund.status === 'pending' ? 'retryable' : 'permanent';
    throw new GatewayError(kind, `refund_${refund.status ?? 'unknown'}`, `Refund ${refund.id} is ${refund.status}`);
  }

  async findRefund(q: { idempotencyKey: string; chargeReference: string }): Promise<Refund | null> {
    const refunds = this.stripe.refunds.list({ payment_intent: q.chargeReference, limit: 100 });
    const r = await this.scan(refunds, q.idempotencyKey);
    if (!r || r.status === 'failed' || r.status === 'canceled') return null;
    return { reference: r.id, chargeReference: q.chargeReference, amountMinor: BigInt(r.amount), status: 'succeeded' };
  }

  /** Succeeded PaymentIntents, then succeeded refunds, created at or after `since`. */
  async *listSince(since: Date): AsyncIterable<GatewayRecord> {
    const from = Math.floor(since.getTime() / 1000);
    for await (const pi of this.created(this.stripe.paymentIntents.list({ limit: 100 }), from)) {
      if (pi.status !== 'succeeded') continue;
      yield {
        kind: 'charge',
        ...toCharge(pi),
        idempotencyKey: pi.metadata?.[KEY] ?? null,
        customerId: pi.metadata?.creditflow_customer ?? null,
        createdAt: new Date(pi.created * 1000),
      };
    }
    for await (const r of this.created(this.stripe.refunds.list({ limit: 100 }), from)) {
      if (r.status !== 'succeeded') continue;
      const charge = typeof r.payment_intent === 'string' ? r.payment_intent : (r.payment_intent?.id ?? undefined);
      yield {
        kind: 'refund',
        reference: r.id,
        chargeReference: charge,
        amountMinor: BigInt(r.amount),
        currency: r.currency.toUpperCase(),
        idempotencyKey: r.metadata?.[KEY] ?? null,
        customerId: null,
        createdAt: new Date(r.created * 1000),
      };
    }
  }

  /**
   * The listed objects created at or after `from` (epoch seconds). The filter is client-side, as in
   * findCharge (localstripe rejects `created`); Stripe lists newest first, so the walk stops at the
   * first older object there, and an oldest-first list (localstripe) is walked to its end.
   */
  private async *created<T extends { created: number }>(list: AsyncIterable<T>, from: number): AsyncIterable<T> {
    let previous: number | undefined;
    const items = list[Symbol.asyncIterator]();
    for (;;) {
      const next = await call(() => items.next());
      if (next.done) return;
      const item = next.value;
      const newestFirst = previous !== undefined && item.created < previous;
      previous = item.created;
      if (item.created >= from) yield item;
      else if (newestFirst) return;
    }
  }

  private async scan<T extends { metadata: Stripe.Metadata | null; status: string | null }>(
    list: AsyncIterable<T>,
    key: string,
    status?: string,
  ): Promise<T | null> {
    return call(async () => {
      let seen = 0;
      for await (const item of list) {
        if (item.metadata?.[KEY] === key && (status === undefined || item.status === status)) return item;
        if (++seen >= MAX_SCAN) break;
      }
      return null;
    });
  }
}

function toStripeAmount(amountMinor: bigint): number {
  const n = Number(amountMinor);
  if (amountMinor <= 0n || !Number.isSafeInteger(n)) {
    throw new GatewayError('permanent', 'invalid_amount', `amount ${amountMinor} is not a positive safe integer`);
  }
  return n;
}

function toCharge(pi: Stripe.PaymentIntent): Charge {
  return { reference: pi.id, amountMinor: BigInt(pi.amount), currency: pi.currency.toUpperCase(), status: 'succeeded' };
}

async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw classify(err);
  }
}

/** Declines and bad requests are final; the network, 5xx, 429 and anything unknown are retried (bounded by the workflow). */
export function classify(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const E = Stripe.errors;
  if (err instanceof E.StripeCardError) {
    return new GatewayError('permanent', err.code ?? 'card_declined', err.message, err.decline_code || undefined);
  }
  if (
    err instanceof E.StripeInvalidRequestError ||
    err instanceof E.StripeIdempotencyError ||
    err instanceof E.StripeAuthenticationError ||
    err instanceof E.StripePermissionError
  ) {
    return new GatewayError('permanent', err.code ?? err.type, err.message);
  }
  if (err instanceof E.StripeError) {
    // StripeAPIError (5xx, 409, an unreadable body), StripeRateLimitError, StripeConnectionError (incl. timeouts).
    return new GatewayError('retryable', err.code ?? err.type, err.message);
  }
  return new GatewayError('retryable', 'unknown', err instanceof Error ? err.message : String(err));
}

/**
 * stripe-node retries a closed connection (ECONNRESET, EPIPE) once even with maxNetworkRetries 0,
 * though the request may have been processed, and without our lookup first. Renaming the code
 * turns it into a StripeConnectionError, which our caller retries the safe way.
 */
function withoutSilentRetry(client: Stripe.HttpClient): Stripe.HttpClient {
  return {
    getClientName: () => client.getClientName(),
    makeRequest: (...args: Parameters<Stripe.HttpClient['makeRequest']>) =>
      client.makeRequest(...args).catch((err: unknown) => {
        const code = (err as { code?: unknown } | null)?.code;
        if (code === 'ECONNRESET' || code === 'EPIPE') {
          throw Object.assign(new Error(`connection closed (${code})`, { cause: err }), { code: 'connection_closed' });
        }
        throw err;
      }),
  };
}
