import { LOT_KINDS } from '../domain/lots';
import { z } from './zod';

/**
 * Response shapes for the OpenAPI document only (nothing parses responses with them). Objects are
 * open (more fields are welcome, API.md) but every field the server always sends is required.
 */

const credits = (description: string) =>
  z.string().openapi({ pattern: '^(0|[1-9][0-9]*)(\\.[0-9]{1,6})?$', description, example: '1500' });
const signedCredits = (description: string) =>
  z.string().openapi({ pattern: '^-?(0|[1-9][0-9]*)(\\.[0-9]{1,6})?$', description, example: '-2.5' });
const decimal = (description: string) =>
  z.string().openapi({ pattern: '^-?(0|[1-9][0-9]*)(\\.[0-9]+)?$', description, example: '2' });
const dateTime = () => z.iso.datetime({ offset: true });

export const ProblemResponse = z
  .object({
    type: z.string().openapi({ format: 'uri' }),
    title: z.string(),
    status: z.number().int().min(400).max(599),
    detail: z.string().optional(),
    errors: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .openapi({ description: 'validation issues, one per field (400)' }),
  })
  .openapi('Problem', { description: 'RFC 9457 problem details; the only error shape' });

export const InsufficientCreditsResponse = ProblemResponse.extend({
  status: z.literal(402),
  reason: z.enum(['insufficient_credits', 'arrears', 'frozen']).optional(),
  available: credits('credits that could be held now'),
  shortfall: credits('credits missing'),
}).openapi('InsufficientCredits', { description: 'Not enough credits: nothing was held' });

export const LotResponse = z
  .object({
    id: z.uuid(),
    customerId: z.string(),
    kind: z.enum(LOT_KINDS),
    priority: z.number().int(),
    original: credits('credits granted'),
    remaining: credits('credits still available (unheld)'),
    held: credits('credits held by active holds'),
    effectiveAt: dateTime(),
    expiresAt: dateTime().nullable(),
    rolloverCap: credits('at most this much rolls over into the next period').nullable(),
    recurrence: z
      .object({ every: z.enum(['month', 'week', 'day']), count: z.number().int().min(1).optional() })
      .nullable(),
    cost: z.object({ amountMinor: z.number().int().min(0), currency: z.string() }).nullable(),
    paymentReference: z.string().nullable(),
    status: z.enum(['active', 'depleted', 'expired', 'voided', 'refunded']),
    originLotId: z.uuid().nullable(),
    renewsLotId: z.uuid().nullable(),
    period: z.number().int().min(1),
  })
  .openapi('Lot');

export const WalletResponse = z
  .object({
    available: signedCredits('spendable credits (negative only within an overdraft)'),
    held: credits('credits reserved by active holds'),
    arrears: credits('credits owed'),
    overdraftLimit: credits('credits that may be spent beyond zero'),
    status: z.enum(['active', 'frozen']),
    version: z.string().openapi({ pattern: '^[0-9]+$', description: 'bumped by every wallet change' }),
  })
  .openapi('Wallet');

export const CustomerResponse = z
  .object({
    id: z.string(),
    name: z.string().nullable(),
    metadata: z.record(z.string(), z.string()),
    createdAt: dateTime(),
    wallet: WalletResponse,
  })
  .openapi('Customer');

export const BalanceResponse = z
  .object({
    customerId: z.string(),
    available: signedCredits('spendable credits'),
    held: credits('credits reserved by active holds'),
    arrears: credits('credits owed'),
    lots: z.array(LotResponse).openapi({ description: 'open lots in consumption order' }),
    nextExpiry: z
      .object({ at: dateTime(), amount: credits('unheld credits expiring then') })
      .nullable()
      .openapi({ description: 'the earliest future expiry with unheld credits, or null' }),
  })
  .openapi('Balance');

export const LedgerResponse = z
  .object({
    transactions: z.array(
      z.object({
        id: z.string(),
        type: z.string(),
        createdAt: dateTime(),
        reference: z.string().nullable(),
        idempotencyKey: z.string(),
        requestedBy: z
          .object({ keyId: z.string(), name: z.string().nullable() })
          .nullable()
          .openapi({ description: 'the API key that asked (support actions, API writes); null for system work' }),
        reason: z.string().nullable(),
        workflowId: z.string().nullable().openapi({ description: 'the workflow that wrote it (holds, refunds, …)' }),
        requestId: z.string().nullable().openapi({
          description:
            "the API request that wrote it (its X-Request-Id, in the API's log lines); null for workflow steps and usage events",
        }),
        entries: z.array(
          z.object({
            account: z.string(),
            lotId: z.uuid().nullable(),
            lotKind: z
              .enum(LOT_KINDS)
              .nullable()
              .openapi({ description: 'the kind of the lot (grant) the entry moved credits of; null when none' }),
            amount: signedCredits('debit (negative) or credit (positive) of the account'),
          }),
        ),
      }),
    ),
    nextCursor: z.string().nullable().openapi({ description: 'pass as ?cursor= for the next page; null at the end' }),
  })
  .openapi('Ledger');

export const GrantResponse = z.object({ lot: LotResponse, transactionId: z.string() }).openapi('GrantResult');
export const VoidResponse = z
  .object({ lot: LotResponse, transactionId: z.string(), voided: credits('credits moved to voided') })
  .openapi('VoidResult');

export const EventsResponse = z
  .object({
    results: z.array(
      z.object({
        index: z.number().int().min(0),
        id: z.string().nullable(),
        status: z.enum(['accepted', 'duplicate', 'rejected']),
        credits: credits('credits charged').optional(),
        transactionId: z.string().optional(),
        rateCard: z.object({ name: z.string(), version: z.number().int().min(1) }).optional(),
        error: z
          .object({
            code: z.enum([
              'invalid',
              'forbidden',
              'unknown_customer',
              'unknown_meter',
              'no_rate',
              'conflict',
              'too_large',
            ]),
            message: z.string(),
          })
          .optional(),
      }),
    ),
  })
  .openapi('EventResults', { description: 'one result per event, in request order' });

export const AuthorizeResponse = z
  .object({
    customerId: z.string(),
    amount: credits('the amount asked about'),
    allowed: z.boolean(),
    available: credits('credits drawable now'),
    shortfall: credits('credits missing (0 when allowed)'),
    reason: z.enum(['ok', 'insufficient_credits', 'arrears', 'frozen']),
  })
  .openapi('Authorization');

export const UsageResponse = z
  .object({
    customerId: z.string(),
    from: dateTime(),
    to: dateTime(),
    groupBy: z.array(z.string()),
    rows: z.array(
      z
        .object({
          meter: z.string().nullable().optional(),
          day: z.iso.date().nullable().optional(),
          quantity: decimal('total quantity'),
          credits: credits('total credits charged (as billed, corrected events included)'),
          correctedCredits: credits('credits of corrected events in this group (given back by corrections)'),
          events: z.number().int().min(0),
        })
        .catchall(z.string().nullable())
        .openapi({ description: 'one row per group; each grouped dimension is a field (null when absent)' }),
    ),
    total: credits('credits over all rows'),
    correctedTotal: credits('corrected credits over all rows'),
  })
  .openapi('Usage');

const StoredRule = z.object({
  meter: z.string(),
  dimensions: z.record(z.string(), z.string()),
  credits: decimal('credits per `per` units'),
  per: decimal('units'),
});

export const RateCardResponse = z
  .object({
    name: z.string(),
    version: z.number().int().min(1),
    effectiveFrom: dateTime(),
    createdAt: dateTime(),
    rules: z.array(StoredRule),
  })
  .openapi('RateCardVersion');

export const CustomerRateCardResponse = z
  .object({ customerId: z.string(), name: z.string() })
  .openapi('CustomerRateCard');

export const PreviewResponse = z
  .object({
    card: z
      .object({ name: z.string(), version: z.number().int().min(1) })
      .nullable()
      .openapi({ description: 'the card in force now (the customer’s or default), null when none' }),
    meters: z.array(
      z.object({
        meter: z.string(),
        quantity: decimal('total quantity'),
        events: z.number().int().min(0),
        current: credits('credits under the current card'),
        draft: credits('credits under the draft'),
        difference: signedCredits('draft − current'),
        unpricedCurrent: z.number().int().min(0),
        unpricedDraft: z.number().int().min(0),
      }),
    ),
    total: z.object({
      current: credits('credits under the current card'),
      draft: credits('credits under the draft'),
      difference: signedCredits('draft − current'),
    }),
  })
  .openapi('PreviewResult');

export const HoldResponse = z
  .object({
    holdId: z.string(),
    customerId: z.string(),
    workflowId: z.string(),
    status: z.enum(['active', 'settled', 'released', 'expired']),
    amount: credits('credits asked for'),
    held: credits('credits still held'),
    captured: credits('credits captured so far'),
    released: credits('credits released'),
    expiresAt: dateTime(),
    lots: z.array(z.object({ lotId: z.uuid(), held: credits('credits held on this lot') })),
  })
  .openapi('Hold');

export const SettleResponse = z
  .object({
    status: z.literal('settled'),
    captured: credits('credits captured in all'),
    released: credits('credits given back'),
    overage: credits('charged beyond the held amount (from available credits, arrears if none)'),
    hold: HoldResponse,
  })
  .openapi('SettleResult');

export const ReleaseResponse = z.object({ status: z.literal('released'), hold: HoldResponse }).openapi('ReleaseResult');

const Role = z.enum(['admin', 'service', 'support', 'viewer']);
export const ApiKeyResponse = z
  .object({
    id: z.string(),
    role: Role,
    customerId: z.string().nullable(),
    name: z.string().nullable(),
    createdAt: z.string(),
    revokedAt: z.string().nullable(),
  })
  .openapi('ApiKey', { description: 'an API key without its secret' });
export const CreatedApiKeyResponse = ApiKeyResponse.extend({
  key: z.string().openapi({ description: 'the secret: shown once' }),
}).openapi('CreatedApiKey');
export const ApiKeyListResponse = z
  .object({
    keys: z.array(ApiKeyResponse),
    nextCursor: z.string().nullable().openapi({ description: 'pass as ?cursor= for the next page; null at the end' }),
  })
  .openapi('ApiKeys');

export const HealthResponse = z.object({ status: z.literal('ok') });
export const ReadyResponse = z.object({
  status: z.enum(['ready', 'not ready']),
  checks: z.object({ postgres: z.enum(['up', 'down']), temporal: z.enum(['up', 'down']) }),
});

// ---- payments ----
const Gateway = z.enum(['sandbox', 'stripe', 'manual']);
const Price = z.object({ amountMinor: z.number().int().min(1), currency: z.string() });

export const PaymentMethodResponse = z
  .object({
    customerId: z.string(),
    gateway: Gateway,
    paymentMethod: z.string(),
    gatewayCustomerId: z.string().nullable(),
    updatedAt: dateTime(),
  })
  .openapi('PaymentMethodOnFile', { description: 'ids only, never card data' });

export const PurchaseResponse = z
  .object({
    purchaseId: z.string(),
    customerId: z.string(),
    status: z.enum(['pending', 'succeeded', 'failed']),
    credits: credits('credits bought'),
    price: Price,
    lotId: z.uuid().optional(),
    lot: LotResponse.optional().openapi({ description: 'the purchased lot (once succeeded)' }),
    payment: z.object({ gateway: Gateway, reference: z.string().nullable() }),
    failureCode: z.string().nullable().optional(),
    failureReason: z.string().optional(),
    attempts: z.number().int().min(0),
    workflowId: z.string(),
    createdAt: dateTime(),
  })
  .openapi('PurchaseResult');

export const PurchasePendingResponse = z
  .object({
    purchaseId: z.string(),
    customerId: z.string(),
    status: z.literal('pending'),
    workflowId: z.string(),
  })
  .openapi('PurchasePending', { description: 'the gateway has not answered yet; the workflow finishes it' });

export const PaymentFailedResponse = ProblemResponse.extend({
  status: z.literal(402),
  code: z.enum(['payment_declined', 'payment_failed']),
  purchaseId: z.string(),
  gatewayCode: z.string(),
  reason: z.string(),
}).openapi('PaymentFailed', { description: 'The charge was declined or failed: nothing was granted' });

export const AutoTopUpResponse = z
  .object({
    customerId: z.string(),
    enabled: z.boolean(),
    threshold: credits('top up when available credits fall below this'),
    mode: z.enum(['fixed', 'target']),
    credits: credits('fixed: credits per top-up; target: the balance to top up to'),
    unitPrice: z.object({ amountMinor: decimal('minor units per credit'), currency: z.string() }),
    paymentMethod: z.string().nullable(),
    cooldownSeconds: z.number().int().min(0),
    maxPerDay: z.number().int().min(1),
    maxAttempts: z.number().int().min(1),
    workflowId: z.string(),
    state: z.object({
      status: z.enum(['idle', 'charging', 'cooldown', 'disabled']),
      lastTopUpAt: dateTime().nullable(),
      consecutiveFailures: z.number().int().min(0),
      disabledReason: z.string().nullable(),
      inFlight: z.object({ topUpId: z.string(), credits: credits('credits being bought') }).nullable(),
      today: z.object({ count: z.number().int().min(0), credits: credits('credits topped up today (UTC)') }),
    }),
  })
  .openapi('AutoTopUpRule');

export const RefundResponse = z
  .object({
    refundId: z.string(),
    customerId: z.string(),
    lotId: z.uuid(),
    status: z.enum(['pending', 'succeeded', 'failed']),
    creditsRequested: credits('asked for (null: all that was refundable)').nullable(),
    creditsClawedBack: credits('taken back from the lot (restored if the refund failed)'),
    moneyRefunded: z.object({
      amountMinor: z.number().int().min(0),
      currency: z.string().nullable(),
    }),
    gateway: z.string().nullable(),
    refundReference: z.string().nullable(),
    failureCode: z.string().nullable().optional(),
    failureReason: z.string().nullable().optional(),
    requestedBy: z
      .object({ keyId: z.string(), name: z.string().nullable() })
      .openapi({ description: 'the API key that asked (`cli` for the command line)' }),
    reason: z.string(),
    workflowId: z.string(),
    createdAt: dateTime(),
    completedAt: dateTime().nullable(),
  })
  .openapi('Refund');

export const RefundPendingResponse = z
  .object({ refundId: z.string(), status: z.literal('pending'), workflowId: z.string() })
  .openapi('RefundPending', { description: 'the saga runs: GET the refund for its outcome' });

export const RefundListResponse = z
  .object({
    refunds: z.array(RefundResponse),
    nextCursor: z.string().nullable().openapi({ description: 'pass as ?cursor= for the next page; null at the end' }),
  })
  .openapi('RefundList');

export const AuditEventListResponse = z
  .object({
    events: z.array(
      z.object({
        id: z.string().openapi({ description: 'int8 as a decimal string' }),
        action: z.string().openapi({ example: 'api_key.created' }),
        subject: z.string(),
        customerId: z.string().nullable(),
        requestedBy: z.object({ keyId: z.string(), name: z.string().nullable() }).nullable(),
        detail: z.record(z.string(), z.unknown()),
        createdAt: dateTime(),
      }),
    ),
    nextCursor: z.string().nullable().openapi({ description: 'pass as ?cursor= for the next page; null at the end' }),
  })
  .openapi('AuditEvents');

export const CorrectionResponse = z
  .object({
    correctionId: z.uuid(),
    eventId: z.string(),
    customerId: z.string(),
    credits: credits('the event’s credits, given back'),
    transactionId: z.uuid(),
    restored: z.array(z.object({ lotId: z.uuid(), amount: credits('back to this lot') })),
    arrearsReduced: credits('taken off the wallet’s arrears'),
    adjustmentLotId: z.uuid().optional().openapi({ description: 'a new adjustment lot for what no lot could take' }),
  })
  .openapi('Correction');

export const AlertsResponse = z
  .object({
    customerId: z.string(),
    lowBalanceThresholds: z.array(credits('a threshold')),
    armed: z.array(credits('fires on the next downward crossing')),
    fired: z.array(credits('went out; re-armed once available rises above it')),
  })
  .openapi('Alerts');

export const NotificationListResponse = z
  .object({
    notifications: z.array(
      z.object({
        id: z.string().openapi({ example: 'evt_42', description: 'also the webhook-id of its deliveries' }),
        type: z.string(),
        customerId: z.string().nullable(),
        createdAt: dateTime(),
        data: z.record(z.string(), z.unknown()),
      }),
    ),
    nextCursor: z.string().nullable().openapi({ description: 'pass as ?cursor= for the next page; null at the end' }),
  })
  .openapi('Notifications');

export const WebhookEndpointResponse = z
  .object({
    id: z.string().openapi({ example: 'we_0123456789abcdef' }),
    url: z.string(),
    types: z.array(z.string()).openapi({ description: 'empty: every type, including types added later' }),
    description: z.string().nullable(),
    createdAt: dateTime(),
    deletedAt: dateTime().nullable(),
  })
  .openapi('WebhookEndpoint');
export const CreatedWebhookEndpointResponse = WebhookEndpointResponse.extend({
  secret: z.string().openapi({ description: 'whsec_…: shown once, never again' }),
}).openapi('CreatedWebhookEndpoint');
export const WebhookEndpointListResponse = z
  .object({ endpoints: z.array(WebhookEndpointResponse), nextCursor: z.string().nullable() })
  .openapi('WebhookEndpoints');
export const RotatedSecretResponse = z
  .object({ id: z.string(), secret: z.string(), previousSecretExpiresAt: dateTime() })
  .openapi('RotatedSecret', { description: 'the old secret keeps signing (a second signature) until then' });
export const WebhookAttemptsResponse = z
  .object({
    attempts: z.array(
      z.object({
        eventId: z.string(),
        attempt: z.number().int(),
        statusCode: z.number().int().nullable(),
        error: z.string().nullable(),
        latencyMs: z.number().int(),
        at: dateTime(),
        delivery: z.object({ status: z.string().nullable(), nextAttemptAt: dateTime().nullable() }),
      }),
    ),
    nextCursor: z.string().nullable(),
  })
  .openapi('WebhookAttempts');

const Discrepancy = z.object({
  check: z.string().openapi({ example: 'inv2: cached available/held equal entry sums' }),
  customerId: z.string().nullable(),
  subject: z.string().openapi({ description: 'the row at fault: a customer, lot, transaction, charge…' }),
  detail: z.string(),
});

export const ReconciliationRunResponse = z
  .object({
    id: z.string(),
    date: z.string().openapi({ example: '2026-11-29' }),
    workflowId: z.string(),
    status: z.enum(['running', 'clean', 'discrepancies', 'failed']),
    startedAt: dateTime(),
    finishedAt: dateTime().nullable(),
    checked: z.object({
      wallets: z.number().int().min(0),
      lots: z.number().int().min(0),
      transactions: z.number().int().min(0),
      events: z.number().int().min(0),
      payments: z.number().int().min(0),
    }),
    discrepancyCount: z.number().int().min(0).openapi({ description: 'all found; at most 10,000 are listed' }),
    discrepancies: z.array(Discrepancy),
    notes: z.array(z.string()).openapi({ description: 'checks skipped and why (e.g. gateway not readable)' }),
  })
  .openapi('ReconciliationRun');

export const ReconciliationStartedResponse = z
  .object({ runId: z.string(), workflowId: z.string() })
  .openapi('ReconciliationStarted', { description: 'the run started: GET /v1/reconciliation/runs/{runId}' });
export const PortalTokenResponse = z
  .object({
    token: z.string().openapi({ description: 'cfpt_…: a viewer credential for this customer until expiresAt' }),
    url: z.string().openapi({ description: 'the portal page with this token' }),
    expiresAt: dateTime(),
  })
  .openapi('PortalToken');
