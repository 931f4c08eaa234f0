import { parseCredits } from '../domain/amount';
import { parseDecimal } from '../domain/decimal';
import { LOT_KINDS } from '../domain/lots';
import { isKnownCurrency } from '../payments/pricing';
import { NOTIFICATION_TYPES } from '../db/notifications';
import { ROLES, type Role } from '../db/api-keys';
import { z } from './zod';

/** Credits as a decimal string (≤ 6 decimals, ≤ 9e12), parsed to bigint µc by the one codec. */
const creditsString = (opts: { positive: boolean }) =>
  z
    .string()
    .openapi({ type: 'string', pattern: '^(0|[1-9][0-9]*)(\\.[0-9]{1,6})?$', example: '1500' })
    .transform((s, ctx) => {
      const r = parseCredits(s);
      if (!r.ok) {
        ctx.addIssue({ code: 'custom', message: r.reason });
        return z.NEVER;
      }
      if (opts.positive && r.value === 0n) {
        ctx.addIssue({ code: 'custom', message: 'must be greater than 0' });
        return z.NEVER;
      }
      return r.value;
    });
export const PositiveCredits = creditsString({ positive: true });
export const NonNegativeCredits = creditsString({ positive: false });

export const CustomerId = z
  .string()
  .regex(/^[A-Za-z0-9_.:-]{1,128}$/, '1–128 characters of A-Za-z0-9_.:-')
  .openapi({ example: 'cust_42' });

export const LotId = z.uuid('must be a lot id (uuid)');

const EARLIEST = Date.parse('0001-01-01T00:00:00Z');
const LATEST = Date.parse('9999-12-31T23:59:59.999Z');

/** RFC 3339 with an explicit offset; normalised to a Date within years 1–9999 (after the offset). */
export const Timestamp = z.iso
  .datetime({ offset: true, message: 'must be an RFC 3339 timestamp, e.g. 2026-01-31T00:00:00Z' })
  .transform((s, ctx) => {
    const d = new Date(s);
    if (!(d.getTime() >= EARLIEST && d.getTime() <= LATEST)) {
      ctx.addIssue({ code: 'custom', message: 'must be between the years 1 and 9999 (UTC)' });
      return z.NEVER;
    }
    return d;
  });

/** Small, flat metadata: bounded keys and values so hostile input cannot bloat rows. */
export const Metadata = z
  .record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'metadata keys: 1–64 of A-Za-z0-9_.-'), z.string().max(500))
  .refine((m) => Object.keys(m).length <= 50, 'at most 50 metadata keys');

export const Money = z.strictObject({
  amountMinor: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  currency: z.literal('USD'),
});

export const CreateCustomerBody = z
  .strictObject({
    id: CustomerId,
    name: z.string().min(1).max(200).optional(),
    metadata: Metadata.optional(),
    overdraftLimit: NonNegativeCredits.optional(),
  })
  .openapi('CreateCustomer');

export const GrantBody = z
  .strictObject({
    amount: PositiveCredits,
    kind: z.enum(LOT_KINDS),
    priority: z.number().int().min(0).max(1000).optional(),
    effectiveAt: Timestamp.optional(),
    expiresAt: Timestamp.optional(),
    rolloverCap: NonNegativeCredits.optional(),
    recurrence: z
      .strictObject({ every: z.enum(['month', 'week', 'day']), count: z.number().int().min(1).max(1200).optional() })
      .optional(),
    cost: Money.optional(),
    paymentReference: z.string().min(1).max(255).optional(),
    reason: z.string().min(1).max(500).optional(),
  })
  .refine((g) => !g.expiresAt || !g.effectiveAt || g.expiresAt > g.effectiveAt, {
    message: 'expiresAt must be after effectiveAt',
    path: ['expiresAt'],
  })
  .refine((g) => !g.recurrence || g.kind === 'allowance', { message: 'only an allowance recurs', path: ['recurrence'] })
  .openapi('Grant');

export const VoidBody = z.strictObject({ reason: z.string().min(1).max(500) }).openapi('VoidGrant');

export const CustomerParams = z.strictObject({ id: CustomerId });
export const LotParams = z.strictObject({ id: CustomerId, lotId: LotId });

/** `?limit=&cursor=` as every list takes them. */
const pageQuery = {
  cursor: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
};

export const LedgerQuery = z.strictObject({
  type: z
    .string()
    .regex(/^[a-z_]{1,64}$/)
    .optional(),
  from: Timestamp.optional(),
  to: Timestamp.optional(),
  ...pageQuery,
});

export const IdempotencyKeyHeader = z
  .string({ message: 'the Idempotency-Key header is required' })
  .regex(/^[\x21-\x7e]{1,255}$/, 'Idempotency-Key: 1–255 visible ASCII characters');

// Response shapes live in api/responses.ts.

// ---- metering ----
const decimalString = (what: string, opts: { positive: boolean }) =>
  z
    .string()
    .openapi({ type: 'string', pattern: '^(0|[1-9][0-9]*)(\\.[0-9]{1,12})?$', example: '2' })
    .superRefine((s, ctx) => {
      const r = parseDecimal(s);
      if (!r.ok) ctx.addIssue({ code: 'custom', message: `${what}: ${r.reason}` });
      else if (opts.positive && r.value.m === 0n) ctx.addIssue({ code: 'custom', message: `${what} must be > 0` });
    });

export const Meter = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'meter: 1–64 characters of A-Za-z0-9_.:-');
const DimensionName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'dimension names: 1–64 of A-Za-z0-9_.-');

export const RateRuleInput = z.strictObject({
  meter: Meter,
  dimensions: z
    .record(DimensionName, z.string().min(1).max(128))
    .refine((d) => Object.keys(d).length <= 20, 'at most 20 dimensions')
    .optional(),
  credits: decimalString('credits', { positive: false }),
  per: z
    .union([decimalString('per', { positive: true }), z.number().int().min(1).max(Number.MAX_SAFE_INTEGER)])
    .optional(),
});

const rulesArray = z
  .array(RateRuleInput)
  .min(1)
  .max(1000)
  .superRefine((rules, ctx) => {
    const seen = new Set<string>();
    rules.forEach((r, i) => {
      const key = JSON.stringify([r.meter, Object.entries(r.dimensions ?? {}).sort()]);
      if (seen.has(key))
        ctx.addIssue({ code: 'custom', path: [i], message: 'duplicate rule (same meter and dimensions)' });
      seen.add(key);
    });
  });

export const RateCardName = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'card name: 1–64 characters of A-Za-z0-9_.:-');
export const RateCardParams = z.strictObject({ name: RateCardName });
export const RateCardBody = z
  .strictObject({ effectiveFrom: Timestamp.optional(), rules: rulesArray })
  .openapi('RateCard');
export const RateCardQuery = z.strictObject({ version: z.coerce.number().int().min(1).max(1_000_000).optional() });
export const CustomerRateCardBody = z.strictObject({ name: RateCardName });

export const EventsBody = z
  .strictObject({ events: z.array(z.unknown()).min(1, 'at least 1 event').max(1000, 'at most 1,000 events') })
  .openapi('Events');

export const AuthorizeBody = z.strictObject({ amount: PositiveCredits }).openapi('Authorize');

export const UsageQuery = z.strictObject({
  from: Timestamp.optional(),
  to: Timestamp.optional(),
  groupBy: z
    .string()
    .regex(
      /^[A-Za-z0-9_.-]{1,64}(,[A-Za-z0-9_.-]{1,64}){0,5}$/,
      'groupBy: comma-separated meter, day or dimension names',
    )
    .optional(),
});

export const PreviewBody = z
  .strictObject({
    draft: z.strictObject({ rules: rulesArray }),
    customerId: CustomerId.optional(),
    from: Timestamp.optional(),
    to: Timestamp.optional(),
    events: z
      .array(
        z.strictObject({
          meter: Meter,
          quantity: decimalString('quantity', { positive: false }),
          timestamp: Timestamp.optional(),
          dimensions: z.record(DimensionName, z.string().max(128)).optional(),
        }),
      )
      .max(1000)
      .optional(),
  })
  .refine((b) => b.events !== undefined || b.customerId !== undefined, {
    message: 'give events, or a customerId whose stored usage to rate',
    path: ['events'],
  })
  .openapi('Preview');

// ---- holds ----
const TtlSeconds = z.number().int().min(1).max(31_536_000);
/** No colon: `hold:<customerId>:<holdId>` must name exactly one hold (customer ids may hold colons). */
export const HoldId = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,128}$/, 'holdId: 1–128 characters of A-Za-z0-9_.- (no colon)');
export const CreateHoldBody = z
  .strictObject({
    customerId: CustomerId,
    holdId: HoldId.optional(),
    amount: PositiveCredits,
    ttlSeconds: TtlSeconds.optional(),
    metadata: Metadata.optional(),
  })
  .openapi('CreateHold');
export const HoldParams = z.strictObject({ holdId: HoldId });
export const HoldQuery = z.strictObject({ customerId: CustomerId });
export const CaptureBody = z.strictObject({ customerId: CustomerId, amount: PositiveCredits });
export const ExtendBody = z
  .strictObject({ customerId: CustomerId, amount: PositiveCredits.optional(), ttlSeconds: TtlSeconds.optional() })
  .refine((b) => b.amount !== undefined || b.ttlSeconds !== undefined, {
    message: 'give amount and/or ttlSeconds',
    path: ['amount'],
  });
export const SettleBody = z.strictObject({ customerId: CustomerId, amount: NonNegativeCredits });
export const ReleaseBody = z.strictObject({ customerId: CustomerId });

// ---- API keys ----
export const ApiKeyId = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'key id: 1–128 characters of A-Za-z0-9_.:-');
export const ApiKeyParams = z.strictObject({ id: ApiKeyId });
export const ApiKeyListQuery = z.strictObject(pageQuery);
export const CreateApiKeyBody = z
  .strictObject({
    role: z.enum(ROLES as [Role, ...Role[]]),
    customerId: CustomerId.optional(),
    name: z.string().min(1).max(200).optional(),
  })
  .refine((k) => k.role !== 'viewer' || k.customerId !== undefined, {
    message: 'a viewer key needs a customerId',
    path: ['customerId'],
  })
  .openapi('CreateApiKey');

// ---- payments ----
/** A gateway's payment method id (Stripe `pm_…`, the sandbox's test methods): never card data. */
export const PaymentMethodId = z
  .string()
  .regex(/^[A-Za-z0-9_]{1,255}$/, 'a payment method id: 1–255 characters of A-Za-z0-9_')
  .openapi({ example: 'pm_card_visa' });
const GatewayCustomerId = z.string().regex(/^[A-Za-z0-9_]{1,255}$/, '1–255 characters of A-Za-z0-9_');
export const Currency = z
  .string()
  .refine(isKnownCurrency, 'an ISO 4217 currency code in upper case, e.g. USD')
  .openapi({ type: 'string', pattern: '^[A-Z]{3}$', example: 'USD' });
/** A price: a positive whole number of minor units (a JSON integer ≤ 2^53 − 1). */
export const Price = z.strictObject({
  amountMinor: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  currency: Currency,
});
/** A unit price per credit in minor units: a positive decimal string (may be fractional, like Stripe's unit_amount_decimal). */
const UnitPrice = z.strictObject({
  amountMinor: z
    .string()
    .openapi({ type: 'string', pattern: '^(0|[1-9][0-9]{0,11})(\\.[0-9]{1,12})?$', example: '0.5' })
    .refine(
      (s) => /^(0|[1-9][0-9]{0,11})(\.[0-9]{1,12})?$/.test(s),
      'a decimal string, ≤ 12 integer and ≤ 12 fractional digits',
    )
    .refine((s) => !/^0(\.0*)?$/.test(s), 'must be greater than 0'),
  currency: Currency,
});

export const PaymentMethodBody = z
  .strictObject({ paymentMethod: PaymentMethodId, gatewayCustomerId: GatewayCustomerId.optional() })
  .openapi('PaymentMethod');

export const PurchaseBody = z
  .strictObject({
    credits: PositiveCredits,
    price: Price,
    paymentMethod: PaymentMethodId.optional(),
    /** The manual gateway's offline payment reference (bank transfer, invoice). */
    paymentReference: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,128}$/, '1–128 characters of A-Za-z0-9_.-')
      .optional(),
    expiresAt: Timestamp.optional(),
    reason: z.string().min(1).max(500).optional(),
  })
  .openapi('Purchase');

export const PurchaseId = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'purchaseId: 1–128 characters of A-Za-z0-9_.-');
export const PurchaseParams = z.strictObject({ purchaseId: PurchaseId });
export const PurchaseQuery = z.strictObject({ customerId: CustomerId });

export const AutoTopUpBody = z
  .strictObject({
    enabled: z.boolean(),
    threshold: NonNegativeCredits,
    mode: z.enum(['fixed', 'target']),
    credits: PositiveCredits,
    unitPrice: UnitPrice,
    paymentMethod: PaymentMethodId.optional(),
    cooldownSeconds: z.number().int().min(0).max(604_800).default(60),
    maxPerDay: z.number().int().min(1).max(1000).default(10),
    maxAttempts: z.number().int().min(1).max(20).default(4),
  })
  .refine((b) => b.mode !== 'target' || b.credits > b.threshold, {
    message: 'in target mode, credits (the target) must be above the threshold',
    path: ['credits'],
  })
  .openapi('AutoTopUp');

// ---- refunds and corrections (support) ----
export const RefundId = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'refundId: 1–128 characters of A-Za-z0-9_.-');
export const RefundParams = z.strictObject({ refundId: RefundId });
export const CreateRefundBody = z
  .strictObject({
    customerId: CustomerId,
    lotId: LotId,
    /** Omitted: all that is refundable (the lot's unspent, unheld remainder). */
    credits: PositiveCredits.optional(),
    reason: z.string().min(1).max(500),
  })
  .openapi('CreateRefund');
export const RefundListQuery = z.strictObject(pageQuery);

export const UsageEventId = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'eventId: 1–128 characters of A-Za-z0-9_.:-');
export const CorrectionBody = z
  .strictObject({ eventId: UsageEventId, reason: z.string().min(1).max(500) })
  .openapi('Correction');

// ---- audit trail (admin) ----
export const AuditAction = z.string().regex(/^[a-z_.]{1,64}$/, 'action: 1–64 characters of a-z_.');
export const AuditEventQuery = z.strictObject({
  customerId: CustomerId.optional(),
  action: AuditAction.optional(),
  ...pageQuery,
});

// ---- alerts and notifications ----

export const AlertsBody = z
  .strictObject({
    lowBalanceThresholds: z
      .array(NonNegativeCredits)
      .max(10, 'at most 10 thresholds')
      .refine((t) => new Set(t).size === t.length, 'thresholds must be distinct'),
  })
  .openapi('Alerts');
export const NotificationType = z.enum(NOTIFICATION_TYPES);
export const NotificationQuery = z.strictObject({
  customerId: CustomerId.optional(),
  type: NotificationType.optional(),
  ...pageQuery,
});

/** POST /v1/customers/:id/portal-tokens (API.md "Live balance and the customer portal"). */
export const PortalTokenBody = z
  .strictObject({ ttlSeconds: z.number().int().min(1).max(86_400).optional() })
  .openapi('PortalTokenRequest');
/** A browser's EventSource cannot send headers: a portal token may come as `?token=`. */
export const BalanceStreamQuery = z.strictObject({ token: z.string().max(512).optional() });
