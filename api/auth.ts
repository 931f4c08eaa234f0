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

/**
 * Bearer API keys, stored as sha256 hashes. Looked up on every request (one indexed query) rather
 * than cached, so a revoked key is refused by every API process on its very next request.
 */
export function authenticate(pool: Pool): RequestHandler {
  return async (req: Request, _res: Response, next: NextFunction) => {
    const header = req.get('authorization') ?? '';
    // The scheme is case-insensitive (RFC 9110 §11.1).
    const m = /^bearer +([\x21-\x7e]{16,256})$/i.exec(header);
    if (!m) throw unauthorized(header ? 'malformed Authorization header' : 'missing API key');
    const row = await findApiKeyByHash(pool, sha256(m[1]!));
    if (!row) throw unauthorized('invalid API key');
    req.principal = row;
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

/** For handlers that read the customer from the body or query: a scoped key only for its customer. */
export function requireScope(req: Request, customerId: string): void {
  const p = req.principal;
  if (p && p.customerId !== null && p.customerId !== customerId)
    throw problem(403, 'this key is scoped to another customer');
}

export const READ_ROLES: readonly Role[] = ['admin', 'service', 'support', 'viewer'];
export const GRANT_ROLES: readonly Role[] = ['admin', 'support'];
export const CUSTOMER_WRITE_ROLES: readonly Role[] = ['admin', 'service', 'support'];
