import { Router, type Request } from 'express';
import type { Command, GrantInput, GrantResult, Ledger, VoidResult } from '../../ledger/ledger';
import type { Logger } from '../../lib/logger';
import type { TopUpTrigger } from '../../client/topups';
import { requestHash } from '../../lib/hash';
import { composeKey } from '../../lib/ids';
import { withAudit } from '../../lib/audit';
import { allow, GRANT_ROLES } from '../auth';
import { finalOutcome, idempotent } from '../idempotent';
import { CustomerParams, GrantBody, IdempotencyKeyHeader, LotParams, VoidBody } from '../schemas';
import { body, params, parse } from '../validate';

/**
 * The HTTP key (and the ledger key under it) is scoped by operation and customer, so two
 * customers (or a grant and a void) may use the same Idempotency-Key; the hash covers the route
 * and the raw body. The ledger key stays as a second line: if a reply was never stored (crash
 * after the commit), the retry gets the ledger's first result.
 */
function command(req: Request, op: string, customerId: string, extra: Record<string, unknown> = {}) {
  const key = parse(IdempotencyKeyHeader, req.get('idempotency-key'), 'header');
  return {
    customerId,
    key: composeKey('api', op, customerId, key),
    requestHash: requestHash({ op, customerId, ...extra, body: req.body as unknown }),
  };
}

export interface GrantDeps {
  ledger: Ledger;
  lifecycle?: (customerId: string) => Promise<void>;
  logger?: Logger;
  topUps?: TopUpTrigger;
}

/** A grant, as POST …/grants and `cli grants create` make it: the ledger, then the lifecycle told. */
export async function grantCredits(deps: GrantDeps, cmd: Command, b: GrantInput): Promise<GrantResult> {
  const { result } = await withAudit({ reason: b.reason }, () => deps.ledger.grant(cmd, b));
  // Lots with an end (expiry or period) get the customer's lifecycle workflow started or told.
  // Best effort and bounded: the ledger never draws an expired lot, and the sweeper nudges
  // lifecycles that missed a lot, so a late workflow delays bookkeeping only.
  // A future-dated lot too: when it becomes drawable it pays any arrears first.
  const later = Date.parse(result.lot.effectiveAt) > Date.now();
  if ((result.lot.expiresAt || later) && deps.lifecycle) {
    await deps
      .lifecycle(cmd.customerId)
      .catch((err: unknown) =>
        deps.logger?.warn({ err: String(err), customerId: cmd.customerId }, 'could not notify the lifecycle workflow'),
      );
  }
  return result;
}

/** A void, as POST …/grants/:lotId/void and `cli grants void` make it. */
export async function voidGrant(deps: GrantDeps, cmd: Command, lotId: string, reason: string): Promise<VoidResult> {
  const { result } = await withAudit({ reason }, () => deps.ledger.voidLot(cmd, { lotId, reason }));
  deps.topUps?.check([cmd.customerId]); // a claw-back may leave the wallet below its top-up threshold
  return result;
}

export function grantRoutes(deps: GrantDeps & { pool: Parameters<typeof idempotent>[0] }): Router {
  const r = Router();

  r.post('/customers/:id/grants', allow(GRANT_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const b = body(GrantBody, req);
    const cmd = command(req, 'grant', id);
    await idempotent(deps.pool, res, cmd.key, cmd.requestHash, () =>
      finalOutcome(async () => ({ status: 201, body: await grantCredits(deps, cmd, b) })),
    );
  });

  r.post('/customers/:id/grants/:lotId/void', allow(GRANT_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id, lotId } = params(LotParams, req);
    const b = body(VoidBody, req);
    const cmd = command(req, 'void', id, { lotId });
    await idempotent(deps.pool, res, cmd.key, cmd.requestHash, () =>
      finalOutcome(async () => ({ status: 200, body: await voidGrant(deps, cmd, lotId, b.reason) })),
    );
  });

  return r;
}
