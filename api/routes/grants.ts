import { Router, type Request, type Response } from 'express';
import type { Outcome } from '../../ledger/ledger';
import { Ledger } from '../../ledger/ledger';
import type { Logger } from '../../lib/logger';
import { requestHash } from '../../lib/hash';
import { allow, GRANT_ROLES } from '../auth';
import { CustomerParams, GrantBody, IdempotencyKeyHeader, LotParams, VoidBody } from '../schemas';
import { body, params, parse } from '../validate';

/**
 * The ledger key is scoped by operation and customer, so two customers (or a grant and a void)
 * may use the same Idempotency-Key; the hash covers the route and the raw body.
 */
function command(req: Request, op: string, customerId: string, extra: Record<string, unknown> = {}) {
  const key = parse(IdempotencyKeyHeader, req.get('idempotency-key'), 'header');
  return {
    customerId,
    key: `api:${op}:${customerId}:${key}`,
    requestHash: requestHash({ op, customerId, ...extra, body: req.body as unknown }),
  };
}

function reply<R>(res: Response, status: number, outcome: Outcome<R>) {
  if (outcome.replayed) res.setHeader('Idempotent-Replayed', 'true');
  res.status(status).json(outcome.result);
}

export function grantRoutes(deps: {
  ledger: Ledger;
  lifecycle?: (customerId: string) => Promise<void>;
  logger?: Logger;
}): Router {
  const r = Router();

  r.post('/customers/:id/grants', allow(GRANT_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const b = body(GrantBody, req);
    const cmd = command(req, 'grant', id);
    const outcome = await deps.ledger.grant(cmd, b);
    // Lots with an end (expiry or period) get the customer's lifecycle workflow started or told.
    // Best effort: the ledger never draws an expired lot, so a late workflow delays bookkeeping only.
    if (outcome.result.lot.expiresAt && deps.lifecycle) {
      await deps
        .lifecycle(id)
        .catch((err: unknown) =>
          deps.logger?.warn({ err: String(err), customerId: id }, 'could not notify the lifecycle workflow'),
        );
    }
    reply(res, 201, outcome);
  });

  r.post('/customers/:id/grants/:lotId/void', allow(GRANT_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id, lotId } = params(LotParams, req);
    const b = body(VoidBody, req);
    const cmd = command(req, 'void', id, { lotId });
    reply(res, 200, await deps.ledger.voidLot(cmd, { lotId, reason: b.reason }));
  });

  return r;
}
