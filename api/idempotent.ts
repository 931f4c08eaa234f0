import { randomUUID } from 'node:crypto';
import type { Response } from 'express';
import { abandonKey, claimKey, completeKey, type StoredReply } from '../db/http-idempotency';
import type { Pool } from '../db/pool';
import { DomainError, isRetryable } from '../domain/errors';
import { domainProblem, problem, problemBody, type HttpProblem } from './problem';

/** `provisional`: not the final outcome (202 pending): sent but not stored, so a retry asks again. */
export type Reply = StoredReply & { provisional?: boolean };

/** Longer than any bounded operation behind it (hold operations give up after ~10 s). */
const LEASE_MS = 60_000;

/**
 * The one HTTP idempotency mechanism (every route that takes Idempotency-Key): claim the key with a
 * lease, do the work holding no database connection, store the final reply. An exact replay gets
 * the stored reply with `Idempotent-Replayed: true`; another body under the key → 409; the key
 * still in flight → 409. Only final outcomes (< 500) are stored: after a 5xx the key is given
 * back, so a retry runs again (and finds the real outcome underneath, which is idempotent too).
 */
export async function idempotent(
  pool: Pool,
  res: Response,
  scope: string,
  hash: string,
  fn: () => Promise<Reply>,
): Promise<void> {
  const claim = await claimKey(pool, scope, hash, randomUUID(), LEASE_MS);
  if (claim.kind === 'conflict') throw problem(409, 'this Idempotency-Key was already used with a different request');
  if (claim.kind === 'in_flight') throw problem(409, 'a request with this Idempotency-Key is still in flight');
  if (claim.kind === 'replay') {
    res.setHeader('Idempotent-Replayed', 'true');
    send(res, claim.reply);
    return;
  }
  let reply: Reply;
  try {
    reply = await fn();
  } catch (err) {
    await abandonKey(pool, scope, claim.owner).catch(() => undefined); // the lease ends it otherwise
    throw err;
  }
  if (reply.status < 500 && !reply.provisional)
    await completeKey(pool, scope, claim.owner, { status: reply.status, body: reply.body });
  else await abandonKey(pool, scope, claim.owner).catch(() => undefined);
  send(res, reply);
}

/**
 * Runs the work; a final domain outcome becomes a stored reply (replays repeat it). Retryable
 * errors and a missing customer (it may exist on the next try) propagate and are not stored.
 */
export async function finalOutcome(fn: () => Promise<Reply>): Promise<Reply> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DomainError && !isRetryable(err) && err.code !== 'CustomerNotFound')
      return problemReply(domainProblem(err));
    throw err;
  }
}

/** A known problem as a reply that can be stored and replayed. */
export const problemReply = (p: HttpProblem): Reply => ({ status: p.status, body: problemBody(p) });

function send(res: Response, r: Reply) {
  if (r.status >= 400) res.status(r.status).type('application/problem+json').send(JSON.stringify(r.body));
  else res.status(r.status).json(r.body);
}
