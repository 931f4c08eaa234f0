import { randomUUID } from 'node:crypto';
import Stripe from 'stripe';
import { GatewayError, isGatewayError } from '../../payments/gateway';
import { classify, StripeGateway } from '../../payments/stripe';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy';
import { startLocalstripe, type Localstripe } from '../support/localstripe';

/**
 * The Stripe adapter through the official client against localstripe (a Stripe emulator), with
 * our fault proxy in between. Every count is read from localstripe itself, through a second
 * client that bypasses the proxy; the proxy's log shows what the adapter sent.
 */
const SECRET = 'sk_test_creditflow';
const TIMEOUT_MS = 1500;
const PI_PATH = '/v1/payment_intents';
const REFUND_PATH = '/v1/refunds';
// localstripe's test cards: 4242… charges; 4000000000000341 attaches but every charge is declined
// (its 4000000000000002 is declined when attached, before any charge); 4000002500003155 needs 3-D Secure.
const VISA = '4242424242424242';
const DECLINED_ON_CHARGE = '4000000000000341';
const NEEDS_3DS = '4000002500003155';

let ls: Localstripe;
let proxy: FaultProxy;
let emulator: Stripe;
let gateway: StripeGateway;

beforeAll(async () => {
  ls = await startLocalstripe();
  proxy = await startFaultProxy(ls.url);
  const { hostname, port } = new URL(ls.url);
  emulator = new Stripe(SECRET, { host: hostname, port, protocol: 'http', maxNetworkRetries: 0 });
  gateway = new StripeGateway({ secretKey: SECRET, apiBase: proxy.url, timeoutMs: TIMEOUT_MS });
}, 30_000);

afterAll(async () => {
  await proxy?.close();
  await ls?.stop();
});

beforeEach(() => proxy.reset());

/** A localstripe customer with a card attached. */
async function customerWithCard(number: string): Promise<{ customer: string; paymentMethod: string }> {
  const customer = await emulator.customers.create({ email: `${randomUUID()}@example.test` });
  const pm = await emulator.paymentMethods.create({
    type: 'card',
    card: { number, exp_month: 12, exp_year: 2030, cvc: '123' },
  });
  await emulator.paymentMethods.attach(pm.id, { customer: customer.id });
  return { customer: customer.id, paymentMethod: pm.id };
}

/** Every PaymentIntent localstripe holds for this customer (or, without one, under this key). */
async function intentsIn(emulatorFilter: { customer?: string; key?: string }): Promise<Stripe.PaymentIntent[]> {
  const all: Stripe.PaymentIntent[] = [];
  for await (const pi of emulator.paymentIntents.list({ limit: 100 })) {
    if (emulatorFilter.customer !== undefined && pi.customer !== emulatorFilter.customer) continue;
    if (emulatorFilter.key !== undefined && pi.metadata.creditflow_key !== emulatorFilter.key) continue;
    all.push(pi);
  }
  return all;
}

async function refundsIn(paymentIntent: string): Promise<Stripe.Refund[]> {
  return (await emulator.refunds.list({ payment_intent: paymentIntent, limit: 100 })).data;
}

function chargeRequest(c: { customer: string; paymentMethod: string }, key = `topup:${randomUUID()}`) {
  return {
    idempotencyKey: key,
    customerId: 'acme',
    gatewayCustomerId: c.customer,
    paymentMethod: c.paymentMethod,
    amountMinor: 1234n,
    currency: 'EUR',
  };
}

/** What a workflow does: the same call, up to `attempts` times, while it fails retryably. */
async function withRetries<T>(fn: () => Promise<T>, attempts = 3): Promise<{ result: T; errors: GatewayError[] }> {
  const errors: GatewayError[] = [];
  for (;;) {
    try {
      return { result: await fn(), errors };
    } catch (err) {
      if (!isGatewayError(err) || err.kind !== 'retryable' || errors.length + 1 >= attempts) throw err;
      errors.push(err);
    }
  }
}

async function gatewayError(p: Promise<unknown>): Promise<GatewayError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isGatewayError(err)) throw new Error(`expected a GatewayError, got ${String(err)}`);
  return err;
}

describe('charge', () => {
  it('creates one succeeded PaymentIntent for the amount and currency; its id is the reference', async () => {
    const card = await customerWithCard(VISA);
    const req = chargeRequest(card);
    const charge = await gateway.charge(req);

    expect(charge).toEqual({
      reference: expect.stringMatching(/^pi_/),
      amountMinor: 1234n,
      currency: 'EUR',
      status: 'succeeded',
    });
    const [pi, ...more] = await intentsIn({ customer: card.customer });
    expect(more).toHaveLength(0);
    expect(pi).toMatchObject({
      id: charge.reference,
      status: 'succeeded',
      amount: 1234,
      currency: 'eur',
      payment_method: card.paymentMethod,
      metadata: { creditflow_key: req.idempotencyKey, creditflow_customer: 'acme' },
    });
    const posts = proxy.seen('POST', PI_PATH);
    expect(posts.map((r) => r.idempotencyKey)).toEqual([req.idempotencyKey]);
    expect(new URLSearchParams(posts[0]!.body).get('off_session')).toBe('true');
  });

  it('a second charge with the same key returns the first PaymentIntent without a POST', async () => {
    const card = await customerWithCard(VISA);
    const req = chargeRequest(card);
    const first = await gateway.charge(req);
    const again = await gateway.charge(req);

    expect(again).toEqual(first);
    expect(proxy.seen('POST', PI_PATH)).toHaveLength(1);
    expect(await intentsIn({ customer: card.customer })).toHaveLength(1);
  });

  it('localstripe itself ignores Idempotency-Key (why the adapter looks the key up before charging)', async () => {
    const card = await customerWithCard(VISA);
    const params = { amount: 100, currency: 'eur', customer: card.customer, payment_method: card.paymentMethod };
    const a = await emulator.paymentIntents.create({ ...params, confirm: true }, { idempotencyKey: 'same' });
    const b = await emulator.paymentIntents.create({ ...params, confirm: true }, { idempotencyKey: 'same' });
    expect(a.id).not.toBe(b.id);
    expect(await intentsIn({ customer: card.customer })).toHaveLength(2);
  });

  it('a card declined on charge is a permanent card_declined error', async () => {
    const card = await customerWithCard(DECLINED_ON_CHARGE);
    const req = chargeRequest(card);
    const err = await gatewayError(gateway.charge(req));

    expect(err).toMatchObject({ kind: 'permanent', code: 'card_declined' });
    const [pi, ...more] = await intentsIn({ customer: card.customer });
    expect(more).toHaveLength(0);
    expect(pi).toMatchObject({ status: 'requires_payment_method', last_payment_error: { code: 'card_declined' } });
    expect(await gateway.findCharge(req)).toBeNull();
  });

  it('a card that needs 3-D Secure is permanent (requires_action cannot be completed off session)', async () => {
    const card = await customerWithCard(NEEDS_3DS);
    const err = await gatewayError(gateway.charge(chargeRequest(card)));

    expect(err).toMatchObject({ kind: 'permanent', code: 'requires_action' });
    expect((await intentsIn({ customer: card.customer })).map((pi) => pi.status)).toEqual(['requires_action']);
  });

  it('503 twice, then success: the same Idempotency-Key on all three POSTs and one PaymentIntent', async () => {
    const card = await customerWithCard(VISA);
    const req = chargeRequest(card);
    proxy.inject({ kind: 'status', status: 503, times: 2, method: 'POST', path: PI_PATH });
    const { result, errors } = await withRetries(() => gateway.charge(req));

    expect(errors.map((e) => e.kind)).toEqual(['retryable', 'retryable']);
    const posts = proxy.seen('POST', PI_PATH);
    expect(posts.map((r) => [r.outcome, r.idempotencyKey])).toEqual([
      ['status', req.idempotencyKey],
      ['status', req.idempotencyKey],
      ['forwarded', req.idempotencyKey],
    ]);
    expect((await intentsIn({ customer: card.customer })).map((pi) => pi.id)).toEqual([result.reference]);
  });

  it('timeout after the emulator charged: retryable, and the retry returns that PaymentIntent without a second', async () => {
    const card = await customerWithCard(VISA);
    const req = chargeRequest(card);
    proxy.inject({ kind: 'hang-after', method: 'POST', path: PI_PATH });

    const err = await gatewayError(gateway.charge(req));
    expect(err.kind).toBe('retryable');
    expect(err.message).toMatch(/timeout/);
    // The emulator did charge: its PaymentIntent exists though the client never heard of it.
    expect(proxy.seen('POST', PI_PATH).map((r) => [r.outcome, r.upstreamStatus])).toEqual([['hang-after', 200]]);
    const charged = await intentsIn({ customer: card.customer });
    expect(charged.map((pi) => pi.status)).toEqual(['succeeded']);

    const retry = await gateway.charge(req);
    expect(retry.reference).toBe(charged[0]!.id);
    expect(await intentsIn({ customer: card.customer })).toHaveLength(1);
    expect(proxy.seen('POST', PI_PATH)).toHaveLength(1); // found by its key, not posted again
  });

  it('reply dropped after the emulator charged: retryable, no silent client retry, one PaymentIntent', async () => {
    const card = await customerWithCard(VISA);
    const req = chargeRequest(card);
    proxy.inject({ kind: 'drop-after', method: 'POST', path: PI_PATH });

    const { result, errors } = await withRetries(() => gateway.charge(req));
    expect(errors.map((e) => e.kind)).toEqual(['retryable']);
    // stripe-node would repeat a reset POST once by itself (and localstripe would charge twice).
    expect(proxy.seen('POST', PI_PATH).map((r) => r.outcome)).toEqual(['drop-after']);
    expect((await intentsIn({ customer: card.customer })).map((pi) => pi.id)).toEqual([result.reference]);
  });

  it('connection dropped before forwarding: retryable, and the retry charges once', async () => {
    const card = await customerWithCard(VISA);
    const req = chargeRequest(card);
    proxy.inject({ kind: 'drop-before', method: 'POST', path: PI_PATH });

    const err = await gatewayError(gateway.charge(req));
    expect(err.kind).toBe('retryable');
    expect(await intentsIn({ customer: card.customer })).toHaveLength(0);

    const charge = await gateway.charge(req);
    expect(proxy.seen('POST', PI_PATH).map((r) => [r.outcome, r.idempotencyKey])).toEqual([
      ['drop-before', req.idempotencyKey],
      ['forwarded', req.idempotencyKey],
    ]);
    expect((await intentsIn({ customer: card.customer })).map((pi) => pi.id)).toEqual([charge.reference]);
  });

  it('findCharge works without a gateway customer (matched by the key in metadata)', async () => {
    const key = `topup:${randomUUID()}`;
    const charge = await gateway.charge({
      idempotencyKey: key,
      customerId: 'acme',
      paymentMethod: 'pm_card_visa',
      amountMinor: 500n,
      currency: 'usd',
    });
    expect(charge).toMatchObject({ amountMinor: 500n, currency: 'USD' });
    expect(await gateway.findCharge({ idempotencyKey: key, customerId: 'acme' })).toEqual(charge);
    expect(await gateway.findCharge({ idempotencyKey: `topup:${randomUUID()}`, customerId: 'acme' })).toBeNull();
    expect((await intentsIn({ key })).map((pi) => pi.id)).toEqual([charge.reference]);
  });
});

describe('refund', () => {
  it('refunds a charge; the same key twice makes one refund', async () => {
    const charge = await gateway.charge(chargeRequest(await customerWithCard(VISA)));
    const req = { idempotencyKey: `refund:${randomUUID()}`, chargeReference: charge.reference, amountMinor: 500n };
    const refund = await gateway.refund(req);
    const again = await gateway.refund(req);

    expect(refund).toEqual({
      reference: expect.stringMatching(/^re_/),
      chargeReference: charge.reference,
      amountMinor: 500n,
      status: 'succeeded',
    });
    expect(again).toEqual(refund);
    const refunds = await refundsIn(charge.reference);
    expect(refunds.map((r) => [r.id, r.amount, r.metadata?.creditflow_key])).toEqual([
      [refund.reference, 500, req.idempotencyKey],
    ]);
    expect(proxy.seen('POST', REFUND_PATH).map((r) => r.idempotencyKey)).toEqual([req.idempotencyKey]);
  });

  it('a refund whose reply was lost is found by its key on the retry', async () => {
    const charge = await gateway.charge(chargeRequest(await customerWithCard(VISA)));
    const req = { idempotencyKey: `refund:${randomUUID()}`, chargeReference: charge.reference, amountMinor: 200n };
    proxy.inject({ kind: 'hang-after', method: 'POST', path: REFUND_PATH });

    const { result, errors } = await withRetries(() => gateway.refund(req));
    expect(errors.map((e) => e.kind)).toEqual(['retryable']);
    expect((await refundsIn(charge.reference)).map((r) => r.id)).toEqual([result.reference]);
    expect(proxy.seen('POST', REFUND_PATH)).toHaveLength(1);
  });

  it('a refund of an unknown charge is permanent', async () => {
    const err = await gatewayError(
      gateway.refund({ idempotencyKey: `refund:${randomUUID()}`, chargeReference: 'pi_unknown', amountMinor: 1n }),
    );
    expect(err.kind).toBe('permanent');
  });
});

describe('error classification', () => {
  it.each([429, 500])('%i is retryable, and nothing is charged', async (status) => {
    const card = await customerWithCard(VISA);
    proxy.inject({ kind: 'status', status, method: 'POST', path: PI_PATH });

    const err = await gatewayError(gateway.charge(chargeRequest(card)));
    expect(err.kind).toBe('retryable');
    expect(err.message).toBe(`injected ${status}`);
    expect(proxy.seen('POST', PI_PATH).map((r) => r.outcome)).toEqual(['status']);
    expect(await intentsIn({ customer: card.customer })).toHaveLength(0);
  });

  it('a bad request (unknown payment method) and a bad secret key are permanent', async () => {
    const card = await customerWithCard(VISA);
    const unknownMethod = await gatewayError(gateway.charge({ ...chargeRequest(card), paymentMethod: 'pm_nope' }));
    expect(unknownMethod.kind).toBe('permanent');
    const badKey = new StripeGateway({ secretKey: 'not_a_key', apiBase: proxy.url, timeoutMs: TIMEOUT_MS });
    expect(await gatewayError(badKey.charge(chargeRequest(card)))).toMatchObject({ kind: 'permanent' });
    expect(await intentsIn({ customer: card.customer })).toHaveLength(0);
  });

  it('an amount that is not a positive safe integer is permanent, before any request', async () => {
    const card = await customerWithCard(VISA);
    for (const amountMinor of [2n ** 53n, 0n, -5n]) {
      const err = await gatewayError(gateway.charge({ ...chargeRequest(card), amountMinor }));
      expect(err).toMatchObject({ kind: 'permanent', code: 'invalid_amount' });
    }
    expect(proxy.requests).toHaveLength(0);
  });

  it('an error the adapter does not know is retryable', () => {
    expect(classify(new Error('boom'))).toMatchObject({ kind: 'retryable', code: 'unknown' });
    expect(classify(new GatewayError('permanent', 'x', 'y'))).toMatchObject({ kind: 'permanent', code: 'x' });
  });
});
