import {
  OpenApiGeneratorV31,
  OpenAPIRegistry,
  type ResponseConfig,
  type RouteConfig,
} from '@asteasolutions/zod-to-openapi';
import * as r from './responses';
import { purchaseIdFor } from './routes/payments';
import { CreateEndpointBody, EndpointParams, PageQuery } from './routes/webhooks';
import * as s from './schemas';
import { z } from './zod';

// ---- Request fields stated more exactly than their zod schemas' JSON Schema says. ----
// Validation stays in schemas.ts; these only describe it (caps, > 0, key patterns) so clients
// and generated tests see the real rules. Refinements (cross-field rules) go in descriptions.

/** A strict copy of a request object with some fields described more exactly. */
const over = (base: z.ZodObject, fields: z.ZodRawShape) => z.strictObject({ ...base.shape, ...fields });
/** JSON Schema 2020-12 keywords the metadata type does not list; zod-to-openapi passes them through. */
const keys = (k: { propertyNames: { pattern: string }; maxProperties: number; description: string }) =>
  k as { description: string };
const UPTO_MAX = '(?:[1-9][0-9]{0,11}|[1-8][0-9]{12})(?:\\.[0-9]{1,6})?|9000000000000(?:\\.0{1,6})?';
/** "0." then 1–`digits` digits, not all zero (no lookahead: generators may not support it). */
const fractionAboveZero = (digits: number) =>
  `0\\.(?:${Array.from({ length: digits }, (_, k) => `0{${k}}[1-9][0-9]{0,${digits - 1 - k}}`).join('|')})`;
const positive = z.string().openapi({
  pattern: `^(?:${UPTO_MAX}|${fractionAboveZero(6)})$`,
  description: 'credits: a decimal string > 0, at most 6 decimals, at most 9,000,000,000,000',
  example: '1500',
});
const nonNegative = z.string().openapi({
  pattern: `^(?:${UPTO_MAX}|0(?:\\.[0-9]{1,6})?)$`,
  description: 'credits: a decimal string ≥ 0, at most 6 decimals, at most 9,000,000,000,000',
  example: '0',
});
const DECIMAL = '(?:0|[1-9][0-9]{0,17})(?:\\.[0-9]{1,12})?';
const decimal = (what: string) =>
  z.string().openapi({
    pattern: `^${DECIMAL}$`,
    description: `${what}: a decimal string ≥ 0, at most 18 integer and 12 fractional digits`,
    example: '2',
  });
const per = z
  .union([
    z.string().openapi({
      pattern: `^(?:[1-9][0-9]{0,17}(?:\\.[0-9]{1,12})?|${fractionAboveZero(12)})$`,
      description: 'units per price: a decimal string > 0',
      example: '1000',
    }),
    z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  ])
  .optional();
const metadata = s.Metadata.openapi(
  keys({
    propertyNames: { pattern: '^[A-Za-z0-9_.-]{1,64}$' },
    maxProperties: 50,
    description: 'at most 50 keys of 1–64 A-Za-z0-9_.-, values ≤ 500 characters',
  }),
).optional();
const dimensions = (minLength: number) =>
  z
    .record(z.string(), z.string().min(minLength).max(128))
    .openapi(
      keys({
        propertyNames: { pattern: '^[A-Za-z0-9_.-]{1,64}$' },
        maxProperties: 20,
        description: 'at most 20 dimensions; names 1–64 of A-Za-z0-9_.-',
      }),
    )
    .optional();
const rules = z
  .array(
    over(s.RateRuleInput, { credits: decimal('credits'), per, dimensions: dimensions(1) }).openapi({
      description: '`credits` credits per `per` units (default 1) of `meter` where the dimensions match ("*": any)',
    }),
  )
  .min(1)
  .max(1000)
  .openapi({ description: '1–1,000 rules; no two with the same meter and dimensions' });
const dateNote = 'Times are RFC 3339 with an explicit offset.';

const body = {
  customer: over(s.CreateCustomerBody, { metadata, overdraftLimit: nonNegative.optional() }).openapi('CreateCustomer', {
    description: 'The same id again with the same body answers 200; with another body 409.',
  }),
  grant: over(s.GrantBody, { amount: positive, rolloverCap: nonNegative.optional() }).openapi('Grant', {
    description: `expiresAt must be after effectiveAt; only an allowance may recur. ${dateNote}`,
  }),
  authorize: over(s.AuthorizeBody, { amount: positive }).openapi('Authorize'),
  events: over(s.EventsBody, {
    events: z
      .array(
        z
          .strictObject({
            id: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/),
            customerId: s.CustomerId,
            meter: s.Meter,
            quantity: decimal('quantity'),
            timestamp: z.iso.datetime({ offset: true }).optional(),
            dimensions: dimensions(0),
          })
          .openapi({ description: 'Checked one by one: an invalid event is rejected in `results`, not a 400.' }),
      )
      .min(1)
      .max(1000),
  }).openapi('Events'),
  rateCard: over(s.RateCardBody, { rules }).openapi('RateCard', { description: dateNote }),
  preview: over(s.PreviewBody, {
    draft: z.strictObject({ rules }),
    events: z
      .array(
        z.strictObject({
          meter: s.Meter,
          quantity: decimal('quantity'),
          timestamp: z.iso.datetime({ offset: true }).optional(),
          dimensions: dimensions(0),
        }),
      )
      .max(1000)
      .optional(),
  }).openapi('Preview', {
    description: `Give events, or a customerId whose stored usage (from..to, default the last 30 days) to rate. ${dateNote}`,
  }),
  createHold: over(s.CreateHoldBody, { amount: positive, metadata }).openapi('CreateHold'),
  capture: over(s.CaptureBody, { amount: positive }).openapi('Capture'),
  extend: over(s.ExtendBody, { amount: positive.optional() }).openapi('Extend', {
    description: 'Give amount (more credits to hold) and/or ttlSeconds (a new time to live).',
  }),
  settle: over(s.SettleBody, { amount: nonNegative }).openapi('Settle'),
  release: s.ReleaseBody.openapi('Release'),
  voidLot: s.VoidBody,
  customerRateCard: s.CustomerRateCardBody.openapi('CustomerRateCardChoice'),
  apiKey: s.CreateApiKeyBody,
  paymentMethod: s.PaymentMethodBody,
  purchase: over(s.PurchaseBody, { credits: positive }).openapi('Purchase', {
    description: `Without paymentMethod, the one on file is charged. ${dateNote}`,
  }),
  refund: over(s.CreateRefundBody, { credits: positive.optional() }).openapi('CreateRefund', {
    description: 'Without credits: all that is refundable (the lot’s unspent, unheld remainder).',
  }),
  autoTopUp: over(s.AutoTopUpBody, {
    threshold: nonNegative,
    credits: positive,
    unitPrice: z.strictObject({
      amountMinor: z.string().openapi({
        pattern: `^(?:[1-9][0-9]{0,11}(?:\\.[0-9]{1,12})?|${fractionAboveZero(12)})$`,
        description: 'minor units per credit: a decimal string > 0, ≤ 12 integer and ≤ 12 fractional digits',
        example: '0.5',
      }),
      currency: s.Currency,
    }),
  }).openapi('AutoTopUp', {
    description: 'In target mode, credits (the balance to top up to) must be above threshold.',
  }),
};

const params = {
  customer: s.CustomerParams,
  lot: s.LotParams,
  hold: z.strictObject({ holdId: s.HoldId.openapi({ example: 'job_1' }) }),
  rateCard: z.strictObject({ name: s.RateCardName.openapi({ example: 'default' }) }),
  apiKey: z.strictObject({ id: z.string().min(1).max(256) }),
  // The contract test seeds this purchase (cust_42, Idempotency-Key seed_purchase).
  purchase: z.strictObject({
    purchaseId: s.PurchaseId.openapi({ example: purchaseIdFor('cust_42', 'seed_purchase') }),
  }),
  refund: z.strictObject({ refundId: s.RefundId.openapi({ example: 'ref_0123456789abcdef' }) }),
  run: z.strictObject({ id: z.string().min(1).max(128).openapi({ example: '00000000-0000-4000-8000-000000000000' }) }),
};

/** A list's query with its cursor described as what it is (opaque). */
const paged = (base: z.ZodObject) =>
  over(base, {
    cursor: z.string().max(200).optional().openapi({ description: 'nextCursor of the previous page (opaque)' }),
  });

const query = {
  ledger: paged(s.LedgerQuery),
  usage: over(s.UsageQuery, {
    from: z.iso
      .datetime({ offset: true })
      .optional()
      .openapi({ description: 'inclusive; default 30 days before `to`; must be before `to`' }),
    to: z.iso.datetime({ offset: true }).optional().openapi({ description: 'exclusive; default now' }),
    groupBy: s.UsageQuery.shape.groupBy.openapi({
      description: 'up to 6 comma-separated of: meter, day, or a dimension name (default meter)',
    }),
  }),
  hold: s.HoldQuery,
  rateCard: s.RateCardQuery,
  purchase: s.PurchaseQuery,
  audit: paged(s.AuditEventQuery),
  notifications: paged(s.NotificationQuery),
  refunds: paged(s.RefundListQuery),
};

// ---- Responses ----
type ErrorStatus = 400 | 401 | 402 | 403 | 404 | 409 | 413 | 415 | 422 | 503;
const PROBLEM = 'application/problem+json';
const problem = (description: string, schema: z.ZodType = r.ProblemResponse, headers?: ResponseConfig['headers']) => ({
  description,
  content: { [PROBLEM]: { schema } },
  ...(headers ? { headers } : {}),
});
const retryAfter: ResponseConfig['headers'] = {
  'Retry-After': { schema: { type: 'integer' }, description: 'seconds' },
};
const ERRORS: Record<ErrorStatus, ResponseConfig> = {
  400: problem('Invalid request: malformed JSON, an unknown field, a value out of range; `errors` lists each'),
  401: problem('Missing, malformed or unknown API key', r.ProblemResponse, {
    'WWW-Authenticate': { schema: { type: 'string' }, description: 'Bearer realm="creditflow"' },
  }),
  402: problem('Not enough credits (`available`, `shortfall`); nothing was held', r.InsufficientCreditsResponse),
  403: problem("The key's role may not do this, or the key is scoped to another customer"),
  404: problem('No such resource'),
  409: problem('Conflict: the Idempotency-Key was used with another request or is still in flight, or a clash'),
  413: problem('The request body is too large'),
  415: problem('The request body is not application/json (UTF-8)'),
  422: problem('Well-formed but impossible now (e.g. settle a released hold, void an inactive lot)'),
  503: problem('A dependency (PostgreSQL or Temporal) is unavailable; retry later', r.ProblemResponse, retryAfter),
};
const json = (schema: z.ZodType, description: string, headers?: ResponseConfig['headers']): ResponseConfig => ({
  description,
  content: { 'application/json': { schema } },
  ...(headers ? { headers } : {}),
});
const replayed: ResponseConfig['headers'] = {
  'Idempotent-Replayed': { schema: { type: 'string', enum: ['true'] }, description: 'present on a replay' },
};
const idempotencyKey = z.object({
  'Idempotency-Key': s.IdempotencyKeyHeader.openapi({
    description: 'Retries with the same key and body replay the first answer; another body is a 409',
    // One per named body example, so each example is a new request rather than a 409.
    examples: [
      '9b2f0c1e-1d7a-4c55-8f1e-0a6e3f5b7c21',
      'c41d8e2a-5b3f-4e9a-9d07-6f2a1b8c3e54',
      'e7a95f30-2c6d-4b18-a3f4-8d1e0c9b6a72',
    ],
  }),
});

interface Op {
  method: 'get' | 'post' | 'put' | 'delete';
  path: string;
  summary: string;
  description?: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** Named request bodies: documentation, and the first requests a contract test sends. */
  examples?: Record<string, { summary: string; value: object }>;
  idempotent?: boolean;
  ok: Record<number, ResponseConfig>;
  errors: ErrorStatus[];
  /** This operation's own description or shape of an error status (default: ERRORS). */
  problems?: Partial<Record<ErrorStatus, ResponseConfig>>;
  tags: string[];
}

/** The OpenAPI document, generated from the same zod schemas that validate requests. */
export function buildOpenApi(): object {
  const reg = new OpenAPIRegistry();
  reg.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API key: `Authorization: Bearer <key>`. Roles: admin, service, support, viewer.',
  });

  const v1 = (o: Op) => {
    // Every /v1 operation can fail validation, authentication, authorisation or a dependency.
    const always: ErrorStatus[] = [400, 401, 403, 503, ...(o.body ? ([413, 415] as ErrorStatus[]) : [])];
    const errors = [...new Set([...always, ...o.errors])].sort((a, b) => a - b);
    const config: RouteConfig = {
      method: o.method,
      path: o.path,
      summary: o.summary,
      ...(o.description ? { description: o.description } : {}),
      tags: o.tags,
      security: [{ bearer: [] }],
      request: {
        ...(o.params ? { params: o.params } : {}),
        ...(o.query ? { query: o.query } : {}),
        ...(o.idempotent ? { headers: idempotencyKey } : {}),
        ...(o.body
          ? { body: { required: true, content: { 'application/json': { schema: o.body, examples: o.examples } } } }
          : {}),
      },
      responses: { ...o.ok, ...Object.fromEntries(errors.map((e) => [e, o.problems?.[e] ?? ERRORS[e]])) },
    };
    reg.registerPath(config);
  };

  // Customers and wallets
  v1({
    method: 'post',
    path: '/v1/customers',
    summary: 'Create a customer and its wallet',
    tags: ['customers'],
    body: body.customer,
    ok: {
      201: json(r.CustomerResponse, 'Created'),
      200: json(r.CustomerResponse, 'Already exists with the same body'),
    },
    errors: [409, 422],
  });
  v1({
    method: 'get',
    path: '/v1/customers/{id}',
    summary: 'A customer and wallet summary',
    tags: ['customers'],
    params: params.customer,
    ok: { 200: json(r.CustomerResponse, 'The customer') },
    errors: [404],
  });
  v1({
    method: 'get',
    path: '/v1/customers/{id}/balance',
    summary: 'Balance with per-lot detail and the next expiry',
    tags: ['customers'],
    params: params.customer,
    ok: { 200: json(r.BalanceResponse, 'The balance') },
    errors: [404],
  });
  v1({
    method: 'get',
    path: '/v1/customers/{id}/ledger',
    summary: 'Ledger transactions, newest first, cursor-paginated',
    description: `limit 1–500 (default 100); from inclusive, to exclusive. ${dateNote}`,
    tags: ['customers'],
    params: params.customer,
    query: query.ledger,
    ok: { 200: json(r.LedgerResponse, 'One page of transactions') },
    errors: [404],
  });

  v1({
    method: 'get',
    path: '/v1/customers/{id}/balance/stream',
    summary: 'Live balance: Server-Sent Events, a `balance` event at once and after every change',
    description:
      'text/event-stream. Each `balance` event carries the Balance body; its `id` is the wallet version ' +
      '(monotonic per customer: after a reconnect, an id not above the last one seen is a state already ' +
      'known). Heartbeat comments every 15 s. Browsers may pass a portal token as `?token=` (EventSource ' +
      'cannot send headers). 503 with Retry-After when this process serves its maximum of streams.',
    tags: ['customers'],
    params: params.customer,
    query: s.BalanceStreamQuery,
    ok: {
      200: {
        description: 'An event stream that stays open',
        content: { 'text/event-stream': { schema: { type: 'string' } } },
      },
    },
    errors: [404],
  });
  v1({
    method: 'post',
    path: '/v1/customers/{id}/portal-tokens',
    summary: 'A short-lived, read-only token for this one customer, and the portal URL that uses it',
    description:
      'ttlSeconds 1–86,400 (default 3,600). Signed (HMAC-SHA256), not stored: it ends at expiresAt. ' +
      'Present it like an API key (viewer of this customer), or as `?token=` on /portal and the stream.',
    tags: ['customers'],
    params: params.customer,
    body: s.PortalTokenBody,
    examples: { hour: { summary: 'An hour (the default)', value: { ttlSeconds: 3600 } } },
    ok: { 201: json(r.PortalTokenResponse, 'Issued') },
    errors: [404],
  });

  // Grants
  v1({
    method: 'post',
    path: '/v1/customers/{id}/grants',
    summary: 'Grant a lot of credits',
    tags: ['grants'],
    params: params.customer,
    idempotent: true,
    body: body.grant,
    ok: { 201: json(r.GrantResponse, 'Granted', replayed) },
    errors: [404, 409, 422],
  });
  v1({
    method: 'post',
    path: '/v1/customers/{id}/grants/{lotId}/void',
    summary: "Void a lot's unused, unheld credits",
    tags: ['grants'],
    params: params.lot,
    idempotent: true,
    body: body.voidLot,
    ok: { 200: json(r.VoidResponse, 'Voided', replayed) },
    errors: [404, 409, 422],
  });

  // Metering
  v1({
    method: 'post',
    path: '/v1/events',
    summary: 'Ingest 1–1,000 usage events; each accepted, duplicate or rejected with a reason',
    description:
      "Each event's id is its idempotency key: the same id again is a duplicate, with another body a conflict.",
    tags: ['metering'],
    body: body.events,
    ok: { 200: json(r.EventsResponse, 'One result per event') },
    errors: [],
  });
  v1({
    method: 'post',
    path: '/v1/customers/{id}/authorize',
    summary: 'May this customer spend this amount now? (no write)',
    tags: ['metering'],
    params: params.customer,
    body: body.authorize,
    ok: { 200: json(r.AuthorizeResponse, 'The answer') },
    errors: [404],
  });
  v1({
    method: 'get',
    path: '/v1/customers/{id}/usage',
    summary: 'Usage grouped by meter, day and dimensions',
    description: `from must be before to. ${dateNote}`,
    tags: ['metering'],
    params: params.customer,
    query: query.usage,
    ok: { 200: json(r.UsageResponse, 'The report') },
    errors: [404],
  });

  // Rate cards
  v1({
    method: 'put',
    path: '/v1/rate-cards/{name}',
    summary: 'Publish a new immutable version of a rate card (admin)',
    tags: ['rate cards'],
    params: params.rateCard,
    body: body.rateCard,
    ok: { 201: json(r.RateCardResponse, 'The new version') },
    errors: [],
  });
  v1({
    method: 'get',
    path: '/v1/rate-cards/{name}',
    summary: 'A rate card version (latest by default)',
    tags: ['rate cards'],
    params: params.rateCard,
    query: query.rateCard,
    ok: { 200: json(r.RateCardResponse, 'The version') },
    errors: [404],
  });
  v1({
    method: 'put',
    path: '/v1/customers/{id}/rate-card',
    summary: "Set the customer's override rate card (admin)",
    tags: ['rate cards'],
    params: params.customer,
    body: body.customerRateCard,
    ok: { 200: json(r.CustomerRateCardResponse, 'Set') },
    errors: [404, 422],
  });
  v1({
    method: 'post',
    path: '/v1/rate-cards/preview',
    summary: 'Rate usage under a draft card and the current one (no write)',
    tags: ['rate cards'],
    body: body.preview,
    ok: { 200: json(r.PreviewResponse, 'Per meter and in total') },
    errors: [404],
  });

  // Holds
  const holdOp = (
    name: string,
    summary: string,
    b: z.ZodType,
    ok: ResponseConfig,
    errors: ErrorStatus[],
    examples?: Op['examples'],
  ) =>
    v1({
      examples,
      method: 'post',
      path: `/v1/holds/{holdId}/${name}`,
      summary,
      tags: ['holds'],
      params: params.hold,
      idempotent: true,
      body: b,
      ok: { 200: ok },
      errors: [404, 409, 422, ...errors],
    });
  v1({
    method: 'post',
    path: '/v1/holds',
    summary: 'Place a hold (answers once it is on the ledger; 402 with the shortfall)',
    description: 'ttlSeconds 1–31,536,000 (default 3600). Without holdId, the Idempotency-Key names the hold.',
    tags: ['holds'],
    idempotent: true,
    body: body.createHold,
    examples: {
      placed: {
        summary: 'Hold 25 credits for 10 minutes',
        value: { customerId: 'cust_42', amount: '25', ttlSeconds: 600 },
      },
      short: { summary: 'More than the customer has: 402', value: { customerId: 'cust_42', amount: '9000000000000' } },
    },
    ok: { 201: json(r.HoldResponse, 'Held', replayed) },
    errors: [402, 404, 409, 422],
  });
  v1({
    method: 'get',
    path: '/v1/holds/{holdId}',
    summary: "A hold's current state",
    tags: ['holds'],
    params: params.hold,
    query: query.hold,
    ok: { 200: json(r.HoldResponse, 'The hold') },
    errors: [404],
  });
  holdOp('capture', 'Capture part of the held credits', body.capture, json(r.HoldResponse, 'Captured', replayed), [], {
    part: { summary: 'Capture 4 credits', value: { customerId: 'cust_42', amount: '4' } },
  });
  holdOp(
    'extend',
    'Hold more credits and/or longer (402 when short)',
    body.extend,
    json(r.HoldResponse, 'Extended', replayed),
    [402],
    {
      longer: { summary: 'Keep it an hour more', value: { customerId: 'cust_42', ttlSeconds: 3600 } },
      short: { summary: 'More than the customer has: 402', value: { customerId: 'cust_42', amount: '9000000000000' } },
    },
  );
  holdOp(
    'settle',
    'Settle the final amount; release the rest',
    body.settle,
    json(r.SettleResponse, 'Settled', replayed),
    [],
    { final: { summary: 'The job used 7 credits', value: { customerId: 'cust_42', amount: '7' } } },
  );
  holdOp(
    'release',
    'Release everything held (job cancelled)',
    body.release,
    json(r.ReleaseResponse, 'Released', replayed),
    [],
    { cancelled: { summary: 'The job was cancelled', value: { customerId: 'cust_42' } } },
  );

  // Payments
  v1({
    method: 'put',
    path: '/v1/customers/{id}/payment-method',
    summary: 'Set the default payment method for purchases and top-ups (ids only, never card data)',
    description: 'A gateway that knows its methods (the sandbox) refuses others with a 400.',
    tags: ['payments'],
    params: params.customer,
    body: body.paymentMethod,
    examples: { visa: { summary: "The sandbox's succeeding test card", value: { paymentMethod: 'pm_card_visa' } } },
    ok: { 200: json(r.PaymentMethodResponse, 'Set') },
    errors: [404],
  });
  v1({
    method: 'get',
    path: '/v1/customers/{id}/payment-method',
    summary: "The customer's default payment method",
    tags: ['payments'],
    params: params.customer,
    ok: { 200: json(r.PaymentMethodResponse, 'On file') },
    errors: [404],
    problems: { 404: problem('No such customer, or no payment method on file') },
  });
  v1({
    method: 'post',
    path: '/v1/customers/{id}/purchases',
    summary: 'Buy credits: charge, then grant a purchased lot whose cost basis is the money paid',
    description:
      'Answers once charged and granted (201), declined (402, nothing granted), or after 10 s without ' +
      'the gateway’s answer (202: the workflow finishes it; GET the purchase). The Idempotency-Key names ' +
      'the purchase: a retry never charges twice.',
    tags: ['payments'],
    params: params.customer,
    idempotent: true,
    body: body.purchase,
    examples: {
      bought: {
        summary: '1,000 credits for $10 on the card on file',
        value: { credits: '1000', price: { amountMinor: 1000, currency: 'USD' }, reason: 'credit pack' },
      },
      declined: {
        summary: 'A declined card: 402',
        value: { credits: '10', price: { amountMinor: 100, currency: 'USD' }, paymentMethod: 'pm_card_chargeDeclined' },
      },
    },
    ok: {
      201: json(r.PurchaseResponse, 'Charged and granted', replayed),
      202: json(r.PurchasePendingResponse, 'Still charging (not stored: a retry with the key asks again)'),
    },
    errors: [402, 404, 409, 422],
    problems: {
      402: problem('The payment was declined or failed (`code`); nothing was granted', r.PaymentFailedResponse),
      422: problem(
        'Nothing charged: no payment method on file (and none given), the manual gateway without ' +
          'paymentReference, expiresAt not in the future, or the wallet would exceed 9,000,000,000,000 credits',
      ),
    },
  });
  v1({
    method: 'get',
    path: '/v1/purchases/{purchaseId}',
    summary: 'A purchase and its outcome',
    tags: ['payments'],
    params: params.purchase,
    query: query.purchase,
    ok: { 200: json(r.PurchaseResponse, 'The purchase') },
    errors: [404],
  });

  // Auto top-up
  v1({
    method: 'put',
    path: '/v1/customers/{id}/auto-topup',
    summary: "Set the wallet's auto top-up rule (admin, support)",
    description:
      'cooldownSeconds 0–604,800 (default 60), maxPerDay 1–1,000 (default 10), maxAttempts 1–20 (default 4). ' +
      'Enabling (again) clears the failure count.',
    tags: ['auto top-up'],
    params: params.customer,
    body: body.autoTopUp,
    examples: {
      fixed: {
        summary: 'Below 100 credits, buy 500 at 1 cent each',
        value: {
          enabled: true,
          threshold: '100',
          mode: 'fixed',
          credits: '500',
          unitPrice: { amountMinor: '1', currency: 'USD' },
          paymentMethod: 'pm_card_visa',
        },
      },
    },
    ok: { 200: json(r.AutoTopUpResponse, 'Set') },
    errors: [404, 422],
    problems: { 422: problem('Enabled with the manual gateway, which cannot charge on its own') },
  });
  v1({
    method: 'get',
    path: '/v1/customers/{id}/auto-topup',
    summary: 'The auto top-up rule and its state',
    tags: ['auto top-up'],
    params: params.customer,
    ok: { 200: json(r.AutoTopUpResponse, 'The rule') },
    errors: [404],
    problems: { 404: problem('No such customer, or no rule') },
  });

  // Refunds (support)
  v1({
    method: 'post',
    path: '/v1/refunds',
    summary: 'Refund a purchased lot, whole or part (admin, support): a saga claws back, refunds, records',
    description:
      'Money: cumulative over the lot’s refunds, floor(cost × credits clawed back so far / original) minus ' +
      'what earlier refunds returned, so partial refunds add up to a whole one. A gateway failure gives the ' +
      'credits back (`refund_compensation`) and the refund ends failed. The Idempotency-Key names the refund.',
    tags: ['refunds'],
    idempotent: true,
    body: body.refund,
    examples: {
      part: {
        summary: 'Refund 100 credits of a lot',
        value: {
          customerId: 'cust_42',
          lotId: '00000000-0000-4000-8000-000000000000',
          credits: '100',
          reason: 'cancelled',
        },
      },
    },
    ok: { 202: json(r.RefundPendingResponse, 'The saga started', replayed) },
    errors: [404, 409, 422],
    problems: {
      422: problem('Not refundable: not a paid purchased lot, expired, or more than its unspent, unheld remainder'),
    },
  });
  v1({
    method: 'get',
    path: '/v1/refunds/{refundId}',
    summary: 'A refund and its outcome',
    tags: ['refunds'],
    params: params.refund,
    ok: { 200: json(r.RefundResponse, 'The refund') },
    errors: [404],
  });
  v1({
    method: 'get',
    path: '/v1/customers/{id}/refunds',
    summary: "The customer's refunds, newest first",
    tags: ['refunds'],
    params: params.customer,
    query: query.refunds,
    ok: { 200: json(r.RefundListResponse, 'A page of refunds') },
    errors: [404],
  });

  // Usage corrections (support)
  v1({
    method: 'post',
    path: '/v1/customers/{id}/corrections',
    summary: "Reverse one usage event's debit (admin, support): a `correction` transaction",
    description:
      'The credits go back to the lots the event’s transaction drew last (while drawable), then to ' +
      'arrears, then into a new adjustment lot. The event stays recorded and is marked corrected.',
    tags: ['corrections'],
    params: params.customer,
    idempotent: true,
    body: s.CorrectionBody,
    examples: {
      wrong: { summary: 'Billed twice by the app', value: { eventId: 'evt_1', reason: 'duplicate submission' } },
    },
    ok: { 201: json(r.CorrectionResponse, 'Corrected', replayed) },
    errors: [404, 409],
    problems: {
      404: problem('No such customer or usage event'),
      409: problem('The event was corrected already (`correctionId`), or the Idempotency-Key clashes'),
    },
  });

  // Reconciliation (admin)
  v1({
    method: 'post',
    path: '/v1/reconciliation/runs',
    summary: 'Start a reconciliation now (admin); a Temporal Schedule runs it daily',
    description:
      'Checks every wallet page by page — invariants 1–7 and 9 from the ledger entries, usage vs its ' +
      'events, ledger vs gateway charges and refunds, holds whose workflow is gone, expired lots with a ' +
      'remainder — and stores a report. It never fixes anything; discrepancies raise one ' +
      '`reconciliation.discrepancy` notification per run.',
    tags: ['operations'],
    ok: { 202: json(r.ReconciliationStartedResponse, 'Started') },
    // no body; one sent anyway must be JSON (the body parser runs for every POST)
    errors: [413, 415],
  });
  v1({
    method: 'get',
    path: '/v1/reconciliation/latest',
    summary: 'The latest reconciliation report (admin)',
    tags: ['operations'],
    ok: { 200: json(r.ReconciliationRunResponse, 'The report') },
    errors: [404],
    problems: { 404: problem('No reconciliation has run yet') },
  });
  v1({
    method: 'get',
    path: '/v1/reconciliation/runs/{id}',
    summary: 'One reconciliation report (admin)',
    tags: ['operations'],
    params: params.run,
    ok: { 200: json(r.ReconciliationRunResponse, 'The report') },
    errors: [404],
  });

  // Alerts and notifications
  v1({
    method: 'put',
    path: '/v1/customers/{id}/alerts',
    summary: 'Set low-balance thresholds: `balance.low` once per downward crossing of each',
    description:
      '0–10 distinct thresholds (credits). A threshold the balance is already below fires at once; one ' +
      'fires again after available rose above it.',
    tags: ['notifications'],
    params: params.customer,
    body: over(s.AlertsBody, { lowBalanceThresholds: z.array(nonNegative).max(10) }).openapi('Alerts'),
    examples: { two: { summary: 'Warn at 1,000 and at 100', value: { lowBalanceThresholds: ['1000', '100'] } } },
    ok: { 200: json(r.AlertsResponse, 'Set') },
    errors: [404],
  });
  v1({
    method: 'get',
    path: '/v1/customers/{id}/alerts',
    summary: "The customer's low-balance thresholds, armed and fired",
    tags: ['notifications'],
    params: params.customer,
    ok: { 200: json(r.AlertsResponse, 'The thresholds') },
    errors: [404],
  });
  v1({
    method: 'get',
    path: '/v1/notifications',
    summary: 'The outbox of notifications, newest first (admin; support with a customerId)',
    tags: ['notifications'],
    query: query.notifications,
    ok: { 200: json(r.NotificationListResponse, 'A page of notifications') },
    errors: [],
  });

  // Webhook endpoints (admin)
  const endpointPage = paged(PageQuery);
  v1({
    method: 'post',
    path: '/v1/webhook-endpoints',
    summary: 'Subscribe a URL to notifications (admin); the signing secret is shown once',
    description:
      'http(s) only; in production mode private, loopback and link-local hosts are refused unless ' +
      'WEBHOOK_ALLOWED_HOSTS names them. Deliveries are signed per Standard Webhooks.',
    tags: ['webhooks'],
    body: CreateEndpointBody.openapi('CreateWebhookEndpoint'),
    examples: {
      low: { summary: 'Low balance only', value: { url: 'https://example.com/hooks', types: ['balance.low'] } },
    },
    ok: { 201: json(r.CreatedWebhookEndpointResponse, 'Created') },
    errors: [],
  });
  v1({
    method: 'get',
    path: '/v1/webhook-endpoints',
    summary: 'Live webhook endpoints (never their secrets)',
    tags: ['webhooks'],
    query: endpointPage,
    ok: { 200: json(r.WebhookEndpointListResponse, 'A page of endpoints') },
    errors: [],
  });
  v1({
    method: 'get',
    path: '/v1/webhook-endpoints/{id}',
    summary: 'One webhook endpoint',
    tags: ['webhooks'],
    params: EndpointParams,
    ok: { 200: json(r.WebhookEndpointResponse, 'The endpoint') },
    errors: [404],
  });
  v1({
    method: 'delete',
    path: '/v1/webhook-endpoints/{id}',
    summary: 'Stop delivering to an endpoint',
    tags: ['webhooks'],
    params: EndpointParams,
    ok: { 200: json(r.WebhookEndpointResponse, 'Deleted (repeats are 200 too)') },
    errors: [404],
  });
  v1({
    method: 'post',
    path: '/v1/webhook-endpoints/{id}/rotate-secret',
    summary: 'A new signing secret; the old one keeps signing for 24 h',
    tags: ['webhooks'],
    params: EndpointParams,
    body: z.strictObject({}).openapi('RotateSecret'),
    ok: { 200: json(r.RotatedSecretResponse, 'Rotated') },
    errors: [404],
  });
  v1({
    method: 'get',
    path: '/v1/webhook-endpoints/{id}/deliveries',
    summary: "An endpoint's delivery attempts, newest first, with status code and latency",
    tags: ['webhooks'],
    params: EndpointParams,
    query: endpointPage,
    ok: { 200: json(r.WebhookAttemptsResponse, 'A page of attempts') },
    errors: [404],
  });

  // Audit trail (admin)
  v1({
    method: 'get',
    path: '/v1/audit-events',
    summary: 'Actions that move no credits (rate-card versions and assignments, API keys), newest first (admin)',
    description: 'Credit movements carry who and why on their ledger transactions (GET …/ledger).',
    tags: ['audit'],
    query: query.audit,
    ok: { 200: json(r.AuditEventListResponse, 'A page of audit events') },
    errors: [],
  });

  // API keys (admin)
  v1({
    method: 'post',
    path: '/v1/api-keys',
    summary: 'Create an API key; its secret is shown once (admin)',
    tags: ['api keys'],
    body: body.apiKey,
    ok: { 201: json(r.CreatedApiKeyResponse, 'Created') },
    errors: [404, 422],
  });
  v1({
    method: 'get',
    path: '/v1/api-keys',
    summary: 'List API keys, never their secrets (admin)',
    tags: ['api keys'],
    query: s.ApiKeyListQuery,
    ok: { 200: json(r.ApiKeyListResponse, 'The keys') },
    errors: [],
  });
  v1({
    method: 'delete',
    path: '/v1/api-keys/{id}',
    summary: 'Revoke an API key, at once on every API process (admin)',
    tags: ['api keys'],
    params: params.apiKey,
    ok: { 200: json(r.ApiKeyResponse, 'Revoked (revokedAt set; a second revoke keeps the first time)') },
    errors: [404],
  });

  // Operations: no auth
  const open = (path: string, summary: string, responses: Record<number, ResponseConfig>) =>
    reg.registerPath({ method: 'get', path, summary, tags: ['operations'], security: [], responses });
  open('/healthz', 'The process is up', { 200: json(r.HealthResponse, 'Up') });
  open('/readyz', 'PostgreSQL and Temporal are reachable', {
    200: json(r.ReadyResponse, 'Ready'),
    503: json(r.ReadyResponse, 'Not ready', retryAfter),
  });
  open('/metrics', 'Prometheus metrics', {
    200: {
      description: 'Prometheus text exposition format',
      content: { 'text/plain': { schema: { type: 'string' } } },
    },
  });
  open('/openapi.json', 'This document', {
    200: { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } },
  });
  open('/portal', 'The customer portal page (reads its portal token from ?token=)', {
    200: { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } },
  });
  open('/docs', 'A human-readable index of this document', {
    200: { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } },
  });

  return new OpenApiGeneratorV31(reg.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'creditflow',
      version: '1',
      description:
        'Credit billing engine API. Credits are decimal strings (≤ 6 decimals); times RFC 3339. ' +
        'Errors are application/problem+json (RFC 9457); a 5xx other than 503 is a bug. ' +
        "Every response carries `X-Request-Id`: the request's own when it sent one of 1–128 visible ASCII " +
        'characters, else a new UUID; the API logs it and ledger transactions record it (`requestId`).',
    },
    security: [{ bearer: [] }],
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
