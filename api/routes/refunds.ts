import { Router } from 'express';
import type { PaymentsClient } from '../../client/payments';
import { formatCredits } from '../../domain/amount';
import { customerNotFound, DomainError } from '../../domain/errors';
import { customerExists } from '../../db/customers';
import type { Pool } from '../../db/pool';
import { getRefund, listRefunds, type RefundRow } from '../../db/refunds';
import { requestRefund } from '../../ledger/refunds';
import { requestHash } from '../../lib/hash';
import { composeKey } from '../../lib/ids';
import { allow, requireScope, GRANT_ROLES, READ_ROLES } from '../auth';
import { finalOutcome, idempotent } from '../idempotent';
import { CreateRefundBody, CustomerParams, IdempotencyKeyHeader, RefundListQuery, RefundParams } from '../schemas';
import { body, decodeCursor, encodeCursor, params, parse, query } from '../validate';

export function refundView(r: RefundRow) {
  return {
    refundId: r.id,
    customerId: r.customerId,
    lotId: r.lotId,
    status: r.status,
    creditsRequested: r.creditsRequested === null ? null : formatCredits(r.creditsRequested),
    creditsClawedBack: formatCredits(r.creditsClawedBack),
    moneyRefunded: { amountMinor: Number(r.moneyMinor), currency: r.currency },
    gateway: r.gateway,
    refundReference: r.refundReference,
    ...(r.failureCode ? { failureCode: r.failureCode, failureReason: r.failureReason } : {}),
    requestedBy: { keyId: r.requestedBy, name: r.requestedByName ?? null },
    reason: r.reason,
    workflowId: r.workflowId,
    createdAt: r.createdAt.toISOString(),
    completedAt: r.completedAt?.toISOString() ?? null,
  };
}

const CURSOR = 'refunds';
const CURSOR_VALUE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\|[A-Za-z0-9_.-]{1,128}$/;

/**
 * Refunds: support staff ask, a saga (`refund:<refundId>`) does it. What cannot be refunded
 * (not a paid purchased lot, more than its unspent, unheld remainder) is refused here, before
 * anything is written; the saga's claw-back checks again under the lot lock.
 */
export function refundRoutes(deps: { pool: Pool; payments: () => Promise<PaymentsClient>; clock: () => Date }): Router {
  const r = Router();

  r.post('/refunds', allow(GRANT_ROLES, { scopedByHandler: true }), async (req, res) => {
    const b = body(CreateRefundBody, req);
    requireScope(req, b.customerId);
    const idem = parse(IdempotencyKeyHeader, req.get('idempotency-key'), 'header');
    const hash = requestHash(req.body);
    await idempotent(deps.pool, res, composeKey('api', 'refund', b.customerId, idem), hash, () =>
      finalOutcome(async () => {
        const row = await requestRefund(
          deps.pool,
          // Temporal is asked only for a refund that passed every check.
          async (input) => (await deps.payments()).refund(input),
          {
            customerId: b.customerId,
            lotId: b.lotId,
            ...(b.credits !== undefined ? { credits: b.credits } : {}),
            reason: b.reason,
            requestedBy: req.principal!.id,
            idempotencyKey: idem,
            requestHash: hash,
          },
          deps.clock(),
        );
        const refundId = row.id;
        return { status: 202, body: { refundId, status: 'pending', workflowId: row.workflowId } };
      }),
    );
  });

  r.get('/refunds/:refundId', allow(READ_ROLES, { scopedByHandler: true }), async (req, res) => {
    const { refundId } = params(RefundParams, req);
    const row = await getRefund(deps.pool, refundId);
    if (!row) throw new DomainError('RefundNotFound', `refund ${refundId} does not exist`);
    requireScope(req, row.customerId);
    res.json(refundView(row));
  });

  r.get('/customers/:id/refunds', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const q = query(RefundListQuery, req);
    if (!(await customerExists(deps.pool, id))) throw customerNotFound(id);
    const valid = (v: string) => CURSOR_VALUE.test(v) && !Number.isNaN(Date.parse(v.split('|')[0]!));
    const at = q.cursor ? decodeCursor(CURSOR, q.cursor, valid).split('|') : undefined;
    const after = at ? { createdAt: new Date(at[0]!), id: at[1]! } : undefined;
    const rows = await listRefunds(deps.pool, id, { limit: q.limit + 1, ...(after ? { after } : {}) });
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    res.json({
      refunds: page.map(refundView),
      nextCursor:
        rows.length > q.limit && last ? encodeCursor(CURSOR, `${last.createdAt.toISOString()}|${last.id}`) : null,
    });
  });

  return r;
}
