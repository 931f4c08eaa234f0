import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { findApiKeyByHash, type ApiKeyRow, type Role } from '../db/api-keys';
import type { Pool } from '../db/pool';
import { sha256 } from '../lib/hash';
import { PORTAL_TOKEN_PREFIX, type PortalTokens } from './portal-tokens';
import { HttpProblem, problem } from './problem';

/** The caller: an API key, or a portal token (a viewer of one customer until `expiresAt`). */
export type Principal = ApiKeyRow & { expiresAt?: Date };

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

/**
 * Bearer API keys, stored as sha256 hashes. Looked up on every request (one indexed query) rather
 * than cached, so a revoked key is refused by every API process on its very next request.
 * Portal tokens (`cfpt_…`, api/portal-tokens.ts) are verified by their signature instead and act as
 * a viewer key of their one customer. A browser's EventSource cannot send headers, so a portal
 * token — never an API key — may also come as `?token=`, on the balance stream only.
 */
export function authenticate(pool: Pool, portal?: { tokens: PortalTokens; clock: () => Date }): RequestHandler {
  return async (req: Request, _res: Response, next: NextFunction) => {
    const header = req.get('authorization') ?? '';
    const fromQuery = typeof req.query.token === 'string' && !header ? req.query.token : null;
    if (fromQuery !== null && !QUERY_TOKEN_PATH.test(req.path))
      throw unauthorized('a portal token in the URL is accepted by the balance stream only');
    // The scheme is case-insensitive (RFC 9110 §11.1).
    const m = fromQuery === null ? /^bearer +([\x21-\x7e]{16,256})$/i.exec(header) : null;
    if (!m && fromQuery === null) throw unauthorized(header ? 'malformed Authorization header' : 'missing API key');
    const secret = m ? m[1]! : fromQuery!;
    if (secret.startsWith(PORTAL_TOKEN_PREFIX) || fromQuery !== null) {
      const v = portal ? portal.tokens.verify(secret, portal.clock()) : ({ ok: false, reason: 'invalid' } as const);
      if (!v.ok) throw unauthorized(v.reason === 'expired' ? 'portal token expired' : 'invalid portal token');
      req.principal = {
        id: 'portal-token',
        role: 'viewer',
        customerId: v.customerId,
        name: 'portal token',
        expiresAt: v.expiresAt,
      };
      return next();
    }
    const row = await findApiKeyByHash(pool, sha256(secret));
    if (!row) throw unauthorized('invalid API key');
    req.principal = row;
    next();
  };
}

/** The one route a browser reaches without headers (EventSource). */
const QUERY_TOKEN_PATH = /^\/customers\/[^/]+\/balance\/stream$/;

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

/** For handlers that read the customer from the body or query: a scoped key only for its customer. */
export function requireScope(req: Request, customerId: string): void {
  const p = req.principal;
  if (p && p.customerId !== null && p.customerId !== customerId)
    throw problem(403, 'this key is scoped to another customer');
}

export const READ_ROLES: readonly Role[] = ['admin', 'service', 'support', 'viewer'];
export const GRANT_ROLES: readonly Role[] = ['admin', 'support'];
export const CUSTOMER_WRITE_ROLES: readonly Role[] = ['admin', 'service', 'support'];
