import { Router } from 'express';
import type { Ledger } from '../../ledger/ledger';
import { correctUsage } from '../../ledger/corrections';
import { withAudit } from '../../lib/audit';
import { requestHash } from '../../lib/hash';
import { composeKey } from '../../lib/ids';
import { allow, GRANT_ROLES } from '../auth';
import { finalOutcome, idempotent } from '../idempotent';
import { CorrectionBody, CustomerParams, IdempotencyKeyHeader } from '../schemas';
import { body, params, parse } from '../validate';

export function correctionRoutes(deps: { ledger: Ledger; pool: Parameters<typeof idempotent>[0] }): Router {
  const r = Router();

  r.post('/customers/:id/corrections', allow(GRANT_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const b = body(CorrectionBody, req);
    const idem = parse(IdempotencyKeyHeader, req.get('idempotency-key'), 'header');
    const hash = requestHash({ op: 'correction', customerId: id, body: req.body as unknown });
    // The ledger key is per request (and event), not per event alone: a second correction of the
    // event then waits for the wallet lock and gets a final 409 AlreadyCorrected (usage_corrections
    // is checked under it), where a shared key would answer a concurrent one "in flight".
    const cmd = { customerId: id, key: composeKey('correction', id, b.eventId, idem), requestHash: hash };
    await idempotent(deps.pool, res, composeKey('api', 'correction', id, idem), hash, () =>
      finalOutcome(async () => {
        const { result } = await withAudit({ reason: b.reason }, () =>
          correctUsage(deps.ledger, cmd, { eventId: b.eventId, reason: b.reason, requestedBy: req.principal!.id }),
        );
        return { status: 201, body: result };
      }),
    );
  });

  return r;
}
