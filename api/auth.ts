import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { findApiKeyByHash, type ApiKeyRow, type Role } from '../db/api-keys';
import type { Pool } from '../db/pool';
import { sha256 } from '../lib/hash';
import { HttpProblem, problem } from './problem';

export type Principal = ApiKeyRow;

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

const CACHE_TTL_MS = 30_000;
const CACHE_MAX = 10_000;

/** Bearer API keys, stored as sha256 hashes; valid keys are cached briefly to keep auth off the hot path. */
export function authenticate(pool: Pool): RequestHandler {
  const cache = new Map<string, { principal: Principal; until: number }>();
  return async (req: Request, _res: Response, next: NextFunction) => {
    const header = req.get('authorization') ?? '';
    const m = /^Bearer ([\x21-\x7e]{16,256})$/.exec(header);
    if (!m) throw unauthorized(header ? 'malformed Authorization header' : 'missing API key');
    const hash = sha256(m[1]!);
    const now = Date.now();
    let hit = cache.get(hash);
    if (!hit || hit.until < now) {
      const row = await findApiKeyByHash(pool, hash);
      if (!row) throw unauthorized('invalid API key');
      if (cache.size >= CACHE_MAX) cache.clear();
      hit = { principal: row, until: now + CACHE_TTL_MS };
      cache.set(hash, hit);
    }
    req.principal = hit.principal;
    next();
  };
}

const unauthorized = (detail: string) =>
  new HttpProblem(401, 'Unauthorized', detail, {}, { 'WWW-Authenticate': 'Bearer realm="creditflow"' });

/** Role check; viewer keys (and any key scoped to a customer) may only touch that customer. */
export function allow(
  roles: readonly Role[],
  opts: { customerParam?: string; /** the handler enforces the key's scope itself */ scopedByHandler?: boolean } = {},
): RequestHandler {
  return (req, _res, next) => {
    const p = req.principal;
    if (!p) throw unauthorized('missing API key');
    if (p.role !== 'admin' && !roles.includes(p.role)) throw problem(403, `the ${p.role} role may not do this`);
    if (p.customerId !== null && !opts.scopedByHandler) {
      const target = opts.customerParam ? req.params[opts.customerParam] : undefined;
      if (target !== p.customerId) throw problem(403, 'this key is scoped to another customer');
    }
    next();
  };
}

export const READ_ROLES: readonly Role[] = ['admin', 'service', 'support', 'viewer'];
export const GRANT_ROLES: readonly Role[] = ['admin', 'support'];
export const CUSTOMER_WRITE_ROLES: readonly Role[] = ['admin', 'service', 'support'];
