import type { ErrorRequestHandler, Response } from 'express';
import type { z } from 'zod';
import { DomainError, type DomainErrorCode } from '../domain/errors';
import type { Logger } from '../lib/logger';
import { DependencyUnavailable, isUnavailable } from '../lib/unavailable';

/** RFC 9457 problem details. The only error shape the API ever sends. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail?: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail ?? title);
  }
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export const problem = (status: number, detail?: string, extra?: Record<string, unknown>) =>
  new HttpProblem(status, TITLES[status] ?? 'Error', detail, extra);

/** Domain errors → HTTP, in one place. */
const DOMAIN_STATUS: Record<DomainErrorCode, number> = {
  CustomerNotFound: 404,
  LotNotFound: 404,
  CustomerConflict: 409,
  IdempotencyConflict: 409,
  IdempotencyInFlight: 409,
  LotNotActive: 422,
  InvalidRequest: 422,
  InsufficientCredits: 402,
  WalletFrozen: 422,
  HoldNotFound: 404,
  HoldNotActive: 422,
  HoldExists: 409,
  HoldExpired: 422,
  AmountTooLarge: 422,
  NotRefundable: 422,
  RefundNotFound: 404,
  EventNotFound: 404,
  AlreadyCorrected: 409,
};

export function validationProblem(error: z.ZodError, where: 'body' | 'query' | 'params' | 'header'): HttpProblem {
  const errors = error.issues.map((i) => ({
    path: [where, ...i.path.map(String)].join('.'),
    message: i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.join(', ')}` : i.message,
  }));
  return problem(400, `invalid ${where}`, { errors });
}

/** The JSON body of a problem; `status` is always the HTTP status number (extra fields cannot replace it). */
export function problemBody(p: HttpProblem): Record<string, unknown> {
  return {
    ...p.extra,
    type: `https://creditflow.dev/problems/${p.status}`,
    title: p.title,
    status: p.status,
    ...(p.detail ? { detail: p.detail } : {}),
  };
}

/** A domain error as its HTTP problem: the one map. */
export const domainProblem = (err: DomainError): HttpProblem =>
  problem(DOMAIN_STATUS[err.code], err.message, { ...err.details, code: err.code });

export function sendProblem(res: Response, p: HttpProblem): void {
  for (const [k, v] of Object.entries(p.headers)) res.setHeader(k, v);
  res
    .status(p.status)
    .type('application/problem+json')
    .send(JSON.stringify(problemBody(p)));
}

/** Errors from express and its router (a path that is not valid percent-encoding, …) carry a 4xx `status`. */
function fromHttpError(err: object): HttpProblem | null {
  const status = (err as { status?: unknown }).status ?? (err as { statusCode?: unknown }).statusCode;
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 400 || status > 499) return null;
  if (err instanceof URIError)
    return problem(400, 'the request path is not valid percent-encoded UTF-8', {
      errors: [{ path: 'params', message: 'not valid percent-encoded UTF-8' }],
    });
  const expose = (err as { expose?: unknown }).expose === true;
  return new HttpProblem(status, TITLES[status] ?? 'Error', expose ? (err as Error).message : undefined);
}

export function errorHandler(log: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    let p: HttpProblem | null = null;
    if (err instanceof HttpProblem) p = err;
    else if (err instanceof DomainError) p = domainProblem(err);
    else if (err instanceof DependencyUnavailable)
      p = new HttpProblem(503, TITLES[503]!, err.message, {}, { 'Retry-After': String(err.retryAfterSeconds) });
    else if (err && typeof err === 'object') p = fromHttpError(err);
    if (!p) {
      // Unknown failure: log it (no secrets: headers are redacted), answer without internals.
      const down = isUnavailable(err);
      log[down ? 'warn' : 'error'](
        { err, method: req.method, path: req.path, requestId: req.requestId },
        down ? 'dependency down' : 'unhandled error',
      );
      p = down
        ? new HttpProblem(503, TITLES[503]!, 'a dependency is unavailable', {}, { 'Retry-After': '5' })
        : problem(500, 'an unexpected error occurred');
    }
    if (res.headersSent) return;
    sendProblem(res, p);
  };
}
