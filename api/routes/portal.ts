import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import express, { Router } from 'express';
import { customerNotFound } from '../../domain/errors';
import { customerExists } from '../../db/customers';
import type { Pool } from '../../db/pool';
import { allow, READ_ROLES } from '../auth';
import type { BalanceStreams } from '../balance-streams';
import { PORTAL_TTL_DEFAULT_SECONDS, type PortalTokens } from '../portal-tokens';
import { HttpProblem } from '../problem';
import { BalanceStreamQuery, CustomerParams, PortalTokenBody } from '../schemas';
import { body, params, query } from '../validate';

/** The live balance stream and portal tokens (API.md "Live balance and the customer portal"). */
export function portalApiRoutes(deps: {
  pool: Pool;
  streams: BalanceStreams;
  tokens: PortalTokens;
  clock: () => Date;
  /** Where the portal page is reached; default: the request's own origin. */
  publicUrl?: string;
}): Router {
  const r = Router();

  r.post('/customers/:id/portal-tokens', allow(['service'], { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const b = body(PortalTokenBody, req);
    if (!(await customerExists(deps.pool, id))) throw customerNotFound(id);
    const { token, expiresAt } = deps.tokens.issue(id, b.ttlSeconds ?? PORTAL_TTL_DEFAULT_SECONDS, deps.clock());
    const base = deps.publicUrl ?? `${req.protocol}://${req.get('host') ?? 'localhost'}`;
    res.status(201).json({
      token,
      url: `${base.replace(/\/+$/, '')}/portal?token=${encodeURIComponent(token)}`,
      expiresAt: expiresAt.toISOString(),
    });
  });

  r.get('/customers/:id/balance/stream', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    query(BalanceStreamQuery, req);
    if (!deps.streams.accepting())
      throw new HttpProblem(
        503,
        'Service Unavailable',
        'too many open balance streams on this process; retry',
        {},
        {
          'Retry-After': '5',
        },
      );
    req.socket.setNoDelay(true);
    const found = await deps.streams.add(
      id,
      res,
      () => {
        res.writeHead(200, {
          'Content-Type': 'text/event-stream; charset=utf-8',
          'Cache-Control': 'no-cache, no-transform',
          Connection: 'keep-alive',
          'X-Accel-Buffering': 'no',
        });
        // EventSource reconnects after this long when the stream ends (e.g. a process shutting down).
        res.write('retry: 2000\n\n');
      },
      req.principal?.expiresAt,
    );
    if (!found) throw customerNotFound(id);
  });

  return r;
}

/** The repository root: sources run from <root>/api/routes, compiled code from <root>/dist/api/routes. */
function root(): string {
  for (let dir = __dirname, i = 0; i < 5; i++, dir = path.dirname(dir))
    if (existsSync(path.join(dir, 'portal', 'index.html'))) return dir;
  return path.resolve(__dirname, '..', '..');
}

/**
 * GET /portal: the customer portal, a static page (portal/index.html and its stylesheet, and the
 * script tsc compiles from portal/src into dist/portal). It holds no data and needs no key: the
 * page reads its portal token from `?token=` and calls the API with it.
 */
export function portalPageRoutes(): Router {
  const r = Router();
  const dir = root();
  const page = path.join(dir, 'portal', 'index.html');
  const html = existsSync(page) ? readFileSync(page) : null;
  const headers = {
    'Cache-Control': 'no-cache',
    // The token is in the page's URL: never send it on as a Referer.
    'Referrer-Policy': 'no-referrer',
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy':
      "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'",
  };
  r.get('/portal', (_req, res) => {
    if (!html) throw new HttpProblem(404, 'Not Found', 'the portal page is not installed (portal/index.html)');
    res.set(headers).type('html').send(html);
  });
  const assets = { setHeaders: (res: express.Response) => res.set(headers), fallthrough: true, index: false };
  r.use('/portal/assets', express.static(path.join(dir, 'portal', 'assets'), assets));
  r.use('/portal/assets', express.static(path.join(dir, 'dist', 'portal'), { ...assets, extensions: ['js'] }));
  return r;
}
