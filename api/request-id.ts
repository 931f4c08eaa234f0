import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import { withAudit } from '../lib/audit';
import type { Logger } from '../lib/logger';

declare module 'express-serve-static-core' {
  interface Request {
    /** X-Request-Id: the caller's when sane, else ours; in every log line and ledger line of the request. */
    requestId: string;
  }
}

/** Visible ASCII only (no spaces, control bytes or anything a log or header could be split by), bounded. */
const SANE = /^[\x21-\x7e]{1,128}$/;

/** Probes and scrapes: their access lines would drown the rest (their latency is in /metrics). */
const QUIET = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * Gives every request an id (an incoming `X-Request-Id` when sane, else a UUID), echoes it in the
 * response, runs the request inside it (lib/audit.ts: log lines, ledger transactions) and writes one
 * access line when the response is sent. No I/O.
 */
export function requestId(log: Logger): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('x-request-id');
    const id = incoming !== undefined && SANE.test(incoming) ? incoming : randomUUID();
    req.requestId = id;
    res.setHeader('X-Request-Id', id);
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      if (QUIET.has(req.path)) return;
      const route = (req.route as { path?: string } | undefined)?.path;
      log.info(
        {
          requestId: id,
          method: req.method,
          path: req.originalUrl.split('?')[0],
          route: route === undefined ? null : `${req.baseUrl}${route}`,
          status: res.statusCode,
          ms: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
          keyId: req.principal?.id ?? null,
        },
        'request',
      );
    });
    withAudit({ requestId: id }, next);
  };
}
