import { Router, type Request } from 'express';
import type { HoldsClient } from '../../client/holds';
import { formatCredits } from '../../domain/amount';
import { customerNotFound, DomainError } from '../../domain/errors';
import { customerExists } from '../../db/customers';
import { getHold } from '../../db/holds';
import type { Pool } from '../../db/pool';
import { holdView } from '../../ledger/holds';
import { reservationWorkflowId } from '../../workflows/reservation';
import { requestHash, sha256 } from '../../lib/hash';
import { composeKey } from '../../lib/ids';
import { allow, requireScope, READ_ROLES } from '../auth';
import { finalOutcome, idempotent, problemReply } from '../idempotent';
import { problem } from '../problem';
import {
  CaptureBody,
  CreateHoldBody,
  ExtendBody,
  HoldParams,
  HoldQuery,
  IdempotencyKeyHeader,
  ReleaseBody,
  SettleBody,
} from '../schemas';
import { body, params, parse, query } from '../validate';

const DEFAULT_TTL = 3600;

type Op = 'capture' | 'extend' | 'settle' | 'release';

/**
 * Hold routes. Cheap checks against the ledger come first (unknown customer or hold, finished or
 * expired hold), so nothing reaches Temporal that cannot succeed; the workflow and the ledger
 * still decide, under their own locks.
 */
export function holdRoutes(deps: { pool: Pool; holds: () => Promise<HoldsClient>; clock?: () => Date }): Router {
  const r = Router();
  const clock = deps.clock ?? (() => new Date());
  const key = (req: Request) => parse(IdempotencyKeyHeader, req.get('idempotency-key'), 'header');

  r.post('/holds', allow(['service'], { scopedByHandler: true }), async (req, res) => {
    const b = body(CreateHoldBody, req);
    requireScope(req, b.customerId);
    const idem = key(req);
    if (!(await customerExists(deps.pool, b.customerId))) throw customerNotFound(b.customerId);
    // Without a holdId, the Idempotency-Key names the hold, so a retry finds the same one.
    const holdId = b.holdId ?? `h_${sha256(`${b.customerId}\u0000${idem}`).slice(0, 32)}`;
    const amount = formatCredits(b.amount);
    const storeKey = composeKey('api', 'hold', 'place', b.customerId, idem);
    await idempotent(deps.pool, res, storeKey, requestHash(req.body), () =>
      finalOutcome(async () => {
        const holds = await deps.holds();
        const request = {
          customerId: b.customerId,
          holdId,
          amount,
          ttlSeconds: b.ttlSeconds ?? DEFAULT_TTL,
          metadata: b.metadata,
        };
        const r = await holds.reserve(request).catch(async (err: unknown) => {
          // A hold named by this very Idempotency-Key whose reservation already finished (its
          // first reply lost to a 503): answer with what that placement did — the hold as the
          // ledger has it now, or the rejection the workflow recorded.
          if (!(err instanceof DomainError && err.code === 'HoldExists') || b.holdId !== undefined) throw err;
          const h = await getHold(deps.pool, b.customerId, holdId);
          if (h) return { outcome: 'placed' as const, hold: holdView(h), workflowId: h.workflowId };
          const rejection = (await holds.finished(b.customerId, holdId)).rejection;
          if (!rejection) throw err;
          return { ...rejection, workflowId: reservationWorkflowId(b.customerId, holdId) };
        });
        if (r.outcome === 'rejected') {
          return problemReply(
            problem(402, `not enough credits to hold ${amount}`, {
              reason: r.reason,
              available: r.available,
              shortfall: r.shortfall,
            }),
          );
        }
        if (r.hold.amount !== amount && r.hold.captured === '0') {
          throw new DomainError('HoldExists', `hold ${holdId} already exists with another amount`);
        }
        return { status: 201, body: { ...r.hold, workflowId: r.workflowId } };
      }),
    );
  });

  r.get('/holds/:holdId', allow(READ_ROLES, { scopedByHandler: true }), async (req, res) => {
    const { holdId } = params(HoldParams, req);
    const { customerId } = query(HoldQuery, req);
    requireScope(req, customerId);
    const h = await getHold(deps.pool, customerId, holdId);
    if (!h) throw problem(404, `hold ${holdId} of customer ${customerId} does not exist`);
    res.json(holdView(h));
  });

  const op = <B extends { customerId: string }>(
    name: Op,
    schema: Parameters<typeof body>[0],
    run: (holds: HoldsClient, holdId: string, b: B, updateId: string) => Promise<unknown>,
  ) =>
    r.post(`/holds/:holdId/${name}`, allow(['service'], { scopedByHandler: true }), async (req, res) => {
      const { holdId } = params(HoldParams, req);
      const b = body(schema, req) as B;
      requireScope(req, b.customerId);
      const idem = key(req);
      const storeKey = composeKey('api', 'hold', name, b.customerId, holdId, idem);
      await idempotent(deps.pool, res, storeKey, requestHash(req.body), () =>
        finalOutcome(async () => {
          const h = await getHold(deps.pool, b.customerId, holdId);
          if (!h) throw new DomainError('HoldNotFound', `hold ${holdId} of customer ${b.customerId} does not exist`);
          // A finished hold may have been finished by this very request (its reply lost to a crash
          // or a 503): Temporal keeps a completed update's result by id, also after the workflow
          // closed, so ask it. Any other update on a finished reservation is HoldNotActive.
          if (h.status !== 'active') {
            try {
              return { status: 200, body: await run(await deps.holds(), holdId, b, sha256(storeKey)) };
            } catch (err) {
              if (err instanceof DomainError && err.code === 'HoldNotActive')
                throw new DomainError('HoldNotActive', `hold ${holdId} is ${h.status}`, { holdStatus: h.status });
              throw err;
            }
          }
          // Past its deadline a hold can only go (release, or the TTL); the ledger checks this too.
          if (name !== 'release' && h.expiresAt <= clock())
            throw new DomainError('HoldExpired', `hold ${holdId} expired at ${h.expiresAt.toISOString()}`, {
              expiresAt: h.expiresAt.toISOString(),
            });
          return { status: 200, body: await run(await deps.holds(), holdId, b, sha256(storeKey)) };
        }),
      );
    });

  op<{ customerId: string; amount: bigint }>('capture', CaptureBody, (h, id, b, u) =>
    h.capture(b.customerId, id, formatCredits(b.amount), u),
  );
  op<{ customerId: string; amount?: bigint; ttlSeconds?: number }>('extend', ExtendBody, (h, id, b, u) =>
    h.extend(
      b.customerId,
      id,
      { amount: b.amount === undefined ? undefined : formatCredits(b.amount), ttlSeconds: b.ttlSeconds },
      u,
    ),
  );
  op<{ customerId: string; amount: bigint }>('settle', SettleBody, async (h, id, b, u) => {
    const s = await h.settle(b.customerId, id, formatCredits(b.amount), u);
    return { status: 'settled', captured: s.captured, released: s.released, overage: s.overage, hold: s.hold };
  });
  op<{ customerId: string }>('release', ReleaseBody, async (h, id, b, u) => ({
    status: 'released',
    hold: await h.release(b.customerId, id, u),
  }));

  return r;
}
