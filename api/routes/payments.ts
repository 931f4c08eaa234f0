import { Router } from 'express';
import type { PaymentsClient } from '../../client/payments';
import type { TopUpTrigger } from '../../client/topups';
import { formatCredits } from '../../domain/amount';
import { customerNotFound } from '../../domain/errors';
import { customerExists, getCustomer } from '../../db/customers';
import { lotsByIds } from '../../db/lots';
import { getPayment, getPaymentMethod, putPaymentMethod, type PaymentRow } from '../../db/payments';
import type { Pool } from '../../db/pool';
import { ensureFits } from '../../ledger/limits';
import { lotView } from '../../ledger/views';
import { PURCHASE_ATTEMPTS, purchaseWorkflowId, type PaymentOrder } from '../../ledger/payments';
import { requestHash, sha256 } from '../../lib/hash';
import { composeKey } from '../../lib/ids';
import type { PaymentGateway } from '../../payments/gateway';
import { allow, requireScope, CUSTOMER_WRITE_ROLES, READ_ROLES } from '../auth';
import { finalOutcome, idempotent, problemReply } from '../idempotent';
import { problem } from '../problem';
import {
  CustomerParams,
  IdempotencyKeyHeader,
  PaymentMethodBody,
  PurchaseBody,
  PurchaseParams,
  PurchaseQuery,
} from '../schemas';
import { body, params, parse, query } from '../validate';

export interface PaymentDeps {
  pool: Pool;
  gateway: PaymentGateway;
  payments: () => Promise<PaymentsClient>;
  topUps?: TopUpTrigger;
  clock: () => Date;
}

/** A gateway that knows its methods refuses others at the boundary (the sandbox's test methods). */
export function checkMethod(gateway: PaymentGateway, pm: string, path: string): void {
  if (gateway.acceptsPaymentMethod && !gateway.acceptsPaymentMethod(pm))
    throw problem(400, `unknown payment method for the ${gateway.name} gateway`, {
      errors: [{ path, message: `${pm} is not a payment method of the ${gateway.name} gateway` }],
    });
}

/** The Idempotency-Key names the purchase, so a retried request finds the same workflow. */
export const purchaseIdFor = (customerId: string, idempotencyKey: string) =>
  `pur_${sha256(`${customerId}\u0000${idempotencyKey}`).slice(0, 32)}`;

export async function purchaseView(pool: Pool, p: PaymentRow) {
  const lot = p.lotId ? (await lotsByIds(pool, p.customerId, [p.lotId]))[0] : undefined;
  return {
    purchaseId: p.id,
    customerId: p.customerId,
    status: p.status,
    credits: formatCredits(p.credits),
    price: { amountMinor: Number(p.amountMinor), currency: p.currency },
    ...(p.lotId ? { lotId: p.lotId } : {}),
    ...(lot ? { lot: lotView(lot) } : {}),
    payment: { gateway: p.gateway, reference: p.paymentReference },
    ...(p.failureReason ? { failureCode: p.failureCode, failureReason: p.failureReason } : {}),
    attempts: p.attempts,
    workflowId: p.workflowId,
    createdAt: p.createdAt.toISOString(),
  };
}

export function paymentRoutes(deps: PaymentDeps): Router {
  const r = Router();

  r.put('/customers/:id/payment-method', allow(CUSTOMER_WRITE_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const b = body(PaymentMethodBody, req);
    checkMethod(deps.gateway, b.paymentMethod, 'body.paymentMethod');
    if (!(await customerExists(deps.pool, id))) throw customerNotFound(id);
    const m = await putPaymentMethod(deps.pool, id, b);
    res.json({ customerId: id, gateway: deps.gateway.name, ...m, updatedAt: m.updatedAt.toISOString() });
  });

  r.get('/customers/:id/payment-method', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    if (!(await customerExists(deps.pool, id))) throw customerNotFound(id);
    const m = await getPaymentMethod(deps.pool, id);
    if (!m) throw problem(404, `customer ${id} has no payment method`);
    res.json({ customerId: id, gateway: deps.gateway.name, ...m, updatedAt: m.updatedAt.toISOString() });
  });

  r.post('/customers/:id/purchases', allow(CUSTOMER_WRITE_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const b = body(PurchaseBody, req);
    const idem = parse(IdempotencyKeyHeader, req.get('idempotency-key'), 'header');
    if (b.paymentMethod) checkMethod(deps.gateway, b.paymentMethod, 'body.paymentMethod');
    const hash = requestHash({ customerId: id, body: req.body as unknown });
    await idempotent(deps.pool, res, composeKey('api', 'purchase', id, idem), hash, () =>
      finalOutcome(async () => {
        const customer = await getCustomer(deps.pool, id);
        if (!customer) throw customerNotFound(id);
        // What the grant after the charge would refuse is refused before charging: never paid without a lot.
        if (b.expiresAt && b.expiresAt <= deps.clock())
          return problemReply(
            problem(422, 'expiresAt must be in the future', {
              errors: [{ path: 'body.expiresAt', message: 'must be in the future' }],
            }),
          );
        ensureFits("the wallet's credits", customer.wallet.available + customer.wallet.held + b.credits);
        const stored = await getPaymentMethod(deps.pool, id);
        const manual = deps.gateway.name === 'manual';
        const paymentMethod = b.paymentMethod ?? stored?.paymentMethod;
        if (manual && !b.paymentReference)
          return problemReply(
            problem(422, 'the manual gateway records an offline payment: give its paymentReference', {
              errors: [{ path: 'body.paymentReference', message: 'required with the manual gateway' }],
            }),
          );
        if (!manual && !paymentMethod)
          return problemReply(
            problem(422, `customer ${id} has no payment method: PUT one, or give paymentMethod`, {
              errors: [{ path: 'body.paymentMethod', message: 'no payment method on file' }],
            }),
          );
        const purchaseId = purchaseIdFor(id, idem);
        const order: PaymentOrder = {
          customerId: id,
          paymentId: purchaseId,
          source: 'purchase',
          credits: formatCredits(b.credits),
          amountMinor: String(b.price.amountMinor),
          currency: b.price.currency,
          gateway: deps.gateway.name,
          ...(paymentMethod ? { paymentMethod } : {}),
          ...(stored?.gatewayCustomerId ? { gatewayCustomerId: stored.gatewayCustomerId } : {}),
          ...(b.paymentReference ? { offlineReference: b.paymentReference } : {}),
          gatewayKey: composeKey('purchase', id, purchaseId),
          ...(b.expiresAt ? { expiresAt: b.expiresAt.toISOString() } : {}),
          ...(b.reason ? { reason: b.reason } : {}),
          maxAttempts: PURCHASE_ATTEMPTS,
          requestedBy: req.principal!.id,
        };
        const answer = await (
          await deps.payments()
        ).purchase({ order, createdAt: deps.clock().toISOString(), requestHash: hash });
        const row = await getPayment(deps.pool, id, purchaseId);
        // The key was used long ago (its stored reply expired) for another purchase.
        if (row && row.requestHash !== hash)
          return problemReply(problem(409, 'this Idempotency-Key was already used with a different request'));
        if (answer.kind === 'pending' || !row || row.status === 'pending')
          return {
            status: 202,
            body: { purchaseId, customerId: id, status: 'pending', workflowId: purchaseWorkflowId(id, purchaseId) },
            provisional: true,
          };
        if (row.status === 'failed') {
          const declined = row.failureCode === 'card_declined';
          return problemReply(
            problem(402, declined ? 'payment declined' : 'payment failed', {
              code: declined ? 'payment_declined' : 'payment_failed',
              purchaseId,
              gatewayCode: row.failureCode ?? 'unknown',
              reason: row.failureReason ?? '',
            }),
          );
        }
        return { status: 201, body: await purchaseView(deps.pool, row) };
      }),
    );
  });

  r.get('/purchases/:purchaseId', allow(READ_ROLES, { scopedByHandler: true }), async (req, res) => {
    const { purchaseId } = params(PurchaseParams, req);
    const { customerId } = query(PurchaseQuery, req);
    requireScope(req, customerId);
    const p = await getPayment(deps.pool, customerId, purchaseId);
    if (!p || p.source !== 'purchase') throw problem(404, `no purchase ${purchaseId} for customer ${customerId}`);
    res.json(await purchaseView(deps.pool, p));
  });

  return r;
}
