import { OpenApiGeneratorV31, OpenAPIRegistry, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import * as s from './schemas';
import { z } from './zod';

/** The OpenAPI document, generated from the same zod schemas that validate requests. */
export function buildOpenApi(): object {
  const reg = new OpenAPIRegistry();
  reg.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  const problems = Object.fromEntries(
    [400, 401, 403, 404, 409, 413, 415, 422].map((code) => [
      code,
      { description: 'problem', content: { 'application/problem+json': { schema: s.Problem } } },
    ]),
  );
  const json = (schema: z.ZodType) => ({ content: { 'application/json': { schema } } });
  const idem = z.object({ 'Idempotency-Key': s.IdempotencyKeyHeader });
  const path = (c: Omit<RouteConfig, 'responses'> & { ok: number; schema: z.ZodType }) => {
    const { ok, schema, ...rest } = c;
    reg.registerPath({
      security: [{ bearer: [] }],
      ...rest,
      responses: { [ok]: { description: 'ok', ...json(schema) }, ...problems },
    });
  };
  path({
    method: 'post',
    path: '/v1/customers',
    summary: 'Create a customer and its wallet',
    request: { body: json(s.CreateCustomerBody) },
    ok: 201,
    schema: s.CustomerResponse,
  });
  path({
    method: 'get',
    path: '/v1/customers/{id}',
    summary: 'A customer and wallet summary',
    request: { params: s.CustomerParams },
    ok: 200,
    schema: s.CustomerResponse,
  });
  path({
    method: 'get',
    path: '/v1/customers/{id}/balance',
    summary: 'Balance with per-lot detail and the next expiry',
    request: { params: s.CustomerParams },
    ok: 200,
    schema: s.BalanceResponse,
  });
  path({
    method: 'get',
    path: '/v1/customers/{id}/ledger',
    summary: 'Ledger transactions, newest first, cursor-paginated',
    request: { params: s.CustomerParams, query: s.LedgerQuery },
    ok: 200,
    schema: s.LedgerResponse,
  });
  path({
    method: 'post',
    path: '/v1/customers/{id}/grants',
    summary: 'Grant a lot of credits',
    request: { params: s.CustomerParams, headers: idem, body: json(s.GrantBody) },
    ok: 201,
    schema: s.GrantResponse,
  });
  path({
    method: 'post',
    path: '/v1/customers/{id}/grants/{lotId}/void',
    summary: "Void a lot's unused, unheld credits",
    request: { params: s.LotParams, headers: idem, body: json(s.VoidBody) },
    ok: 200,
    schema: s.VoidResponse,
  });
  const any = z.object({}).passthrough();
  path({
    method: 'post',
    path: '/v1/events',
    summary: 'Ingest 1–1,000 usage events; each accepted, duplicate or rejected with a reason',
    request: { body: json(s.EventsBody) },
    ok: 200,
    schema: any,
  });
  path({
    method: 'post',
    path: '/v1/customers/{id}/authorize',
    summary: 'May this customer spend this amount now? (no write)',
    request: { params: s.CustomerParams, body: json(s.AuthorizeBody) },
    ok: 200,
    schema: any,
  });
  path({
    method: 'get',
    path: '/v1/customers/{id}/usage',
    summary: 'Usage grouped by meter, day and dimensions',
    request: { params: s.CustomerParams, query: s.UsageQuery },
    ok: 200,
    schema: any,
  });
  path({
    method: 'put',
    path: '/v1/rate-cards/{name}',
    summary: 'Publish a new immutable version of a rate card',
    request: { params: s.RateCardParams, body: json(s.RateCardBody) },
    ok: 201,
    schema: any,
  });
  path({
    method: 'get',
    path: '/v1/rate-cards/{name}',
    summary: 'A rate card version (latest by default)',
    request: { params: s.RateCardParams, query: s.RateCardQuery },
    ok: 200,
    schema: any,
  });
  path({
    method: 'put',
    path: '/v1/customers/{id}/rate-card',
    summary: "Set the customer's override rate card",
    request: { params: s.CustomerParams, body: json(s.CustomerRateCardBody) },
    ok: 200,
    schema: any,
  });
  path({
    method: 'post',
    path: '/v1/rate-cards/preview',
    summary: 'Rate usage under a draft card and the current one (no write)',
    request: { body: json(s.PreviewBody) },
    ok: 200,
    schema: any,
  });
  const holdPath = (method: 'post' | 'get', p: string, summary: string, body?: z.ZodType, ok = 200) =>
    path({
      method,
      path: p,
      summary,
      request: {
        ...(p.includes('{holdId}') ? { params: s.HoldParams } : {}),
        ...(method === 'post' ? { headers: idem } : { query: s.HoldQuery }),
        ...(body ? { body: json(body) } : {}),
      },
      ok,
      schema: any,
    });
  holdPath(
    'post',
    '/v1/holds',
    'Place a hold (answers after it is on the ledger; 402 with the shortfall)',
    s.CreateHoldBody,
    201,
  );
  holdPath('get', '/v1/holds/{holdId}', "A hold's current state");
  holdPath('post', '/v1/holds/{holdId}/capture', 'Capture part of the held credits', s.CaptureBody);
  holdPath('post', '/v1/holds/{holdId}/extend', 'Hold more credits and/or longer (402 when short)', s.ExtendBody);
  holdPath('post', '/v1/holds/{holdId}/settle', 'Settle the final amount; release the rest', s.SettleBody);
  holdPath('post', '/v1/holds/{holdId}/release', 'Release everything held (job cancelled)', s.ReleaseBody);
  for (const p of ['/healthz', '/readyz']) {
    reg.registerPath({
      method: 'get',
      path: p,
      responses: { 200: { description: 'ok' }, 503: { description: 'not ready' } },
    });
  }
  return new OpenApiGeneratorV31(reg.definitions).generateDocument({
    openapi: '3.1.0',
    info: { title: 'creditflow', version: '1', description: 'Credit billing engine API' },
  });
}

const escape = (t: string) =>
  t.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** A plain HTML index of the OpenAPI document: every operation with its summary. */
export function renderDocs(doc: object): string {
  const paths = (doc as { paths?: Record<string, Record<string, { summary?: string }>> }).paths ?? {};
  const rows = Object.entries(paths)
    .flatMap(([p, ops]) =>
      Object.entries(ops).map(
        ([method, op]) =>
          `<tr><td><code>${method.toUpperCase()}</code></td><td><code>${escape(p)}</code></td><td>${escape(op.summary ?? '')}</td></tr>`,
      ),
    )
    .join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><title>creditflow API</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}td{padding:.2rem .8rem;border-bottom:1px solid #ddd}</style></head>
<body><h1>creditflow API v1</h1><p>Machine-readable: <a href="/openapi.json">/openapi.json</a>. Auth: <code>Authorization: Bearer &lt;key&gt;</code>.</p>
<table>${rows}</table></body></html>`;
}
