import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { formatCredits, MAX_CREDITS_MICROS } from '../domain/amount';
import { formatDecimal, parseDecimal, type Decimal } from '../domain/decimal';
import { rateEvent } from '../domain/rating';
import type { WalletRow } from '../db/customers';
import { customerRateCards } from '../db/rate-cards';
import { eventKey, findEvents, insertEvents, type NewEvent } from '../db/usage-events';
import { postDebits, type Ledger } from '../ledger/ledger';
import { requestHash } from '../lib/hash';
import { DEFAULT_CARD, RateCardResolver } from './rate-cards';

export const MAX_BATCH = 1000;
/** Events may not claim to come from the future beyond clock skew. */
const MAX_FUTURE_MS = 5 * 60_000;

const EventSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'id: 1–128 characters of A-Za-z0-9_.:-'),
  customerId: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'customerId: 1–128 characters of A-Za-z0-9_.:-'),
  meter: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'meter: 1–64 characters of A-Za-z0-9_.:-'),
  quantity: z.string(),
  timestamp: z.iso.datetime({ offset: true, message: 'timestamp must be RFC 3339' }).optional(),
  dimensions: z
    .record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'dimension names: 1–64 of A-Za-z0-9_.-'), z.string().max(128))
    .refine((d) => Object.keys(d).length <= 20, 'at most 20 dimensions')
    .optional(),
});

export interface ValidEvent {
  index: number;
  id: string;
  customerId: string;
  meter: string;
  quantity: Decimal;
  timestamp: Date;
  dimensions: Record<string, string>;
  hash: string;
}

export type EventError = {
  code: 'invalid' | 'forbidden' | 'unknown_customer' | 'unknown_meter' | 'no_rate' | 'conflict' | 'too_large';
  message: string;
};

export interface EventResult {
  index: number;
  id: string | null;
  status: 'accepted' | 'duplicate' | 'rejected';
  credits?: string;
  transactionId?: string;
  rateCard?: { name: string; version: number };
  error?: EventError;
}

/** PostgreSQL text and jsonb cannot hold NUL, and UTF-8 cannot encode an unpaired surrogate. */
function unstorable(s: string): string | null {
  if (s.includes('\u0000')) return 'contains NUL (\\u0000), which cannot be stored';
  if (!(s as string & { isWellFormed(): boolean }).isWellFormed())
    return 'is not well-formed Unicode (unpaired surrogate), which cannot be stored';
  return null;
}

/** The first string of the event the database would refuse, named by its field. */
function unstorableField(raw: unknown): string | null {
  if (!raw || typeof raw !== 'object') return null;
  const o = raw as Record<string, unknown>;
  for (const field of ['id', 'customerId', 'meter', 'quantity', 'timestamp']) {
    const v = o[field];
    const why = typeof v === 'string' ? unstorable(v) : null;
    if (why) return `${field}: ${why}`;
  }
  if (o.dimensions && typeof o.dimensions === 'object') {
    for (const [name, v] of Object.entries(o.dimensions)) {
      const bad = unstorable(name);
      if (bad) return `dimensions: a dimension name ${bad}`;
      const why = typeof v === 'string' ? unstorable(v) : null;
      if (why) return `dimensions.${name}: ${why}`;
    }
  }
  return null;
}

/** Validates one event on its own, so one bad event never sinks the batch. */
export function validateEvent(raw: unknown, index: number, now: Date): ValidEvent | EventResult {
  const id =
    raw && typeof raw === 'object' && typeof (raw as { id?: unknown }).id === 'string'
      ? (raw as { id: string }).id
      : null;
  const reject = (message: string): EventResult => ({
    index,
    id,
    status: 'rejected',
    error: { code: 'invalid', message },
  });
  const bad = unstorableField(raw);
  if (bad) return reject(bad);
  const p = EventSchema.safeParse(raw);
  if (!p.success) {
    const i = p.error.issues[0]!;
    return reject(
      i.code === 'unrecognized_keys'
        ? `unknown field(s): ${i.keys.join(', ')}`
        : `${i.path.join('.') || 'event'}: ${i.message}`,
    );
  }
  const q = parseDecimal(p.data.quantity);
  if (!q.ok) return reject(`quantity: ${q.reason}`);
  const timestamp = p.data.timestamp ? new Date(p.data.timestamp) : now;
  if (timestamp.getTime() > now.getTime() + MAX_FUTURE_MS)
    return reject('timestamp: more than 5 minutes in the future');
  const dimensions = p.data.dimensions ?? {};
  // The content identity of an event: a retry without a timestamp is still the same event.
  const hash = requestHash({
    meter: p.data.meter,
    quantity: formatDecimal(q.value),
    timestamp: p.data.timestamp ? timestamp.toISOString() : null,
    dimensions,
  });
  return {
    index,
    id: p.data.id,
    customerId: p.data.customerId,
    meter: p.data.meter,
    quantity: q.value,
    timestamp,
    dimensions,
    hash,
  };
}

const isValid = (e: ValidEvent | EventResult): e is ValidEvent => 'hash' in e;

/**
 * Why debiting `total` (this batch's usage so far for the wallet) would take the wallet beyond
 * the amounts the API accepts, or null when it fits. Checked before the write, so a sum can
 * never overflow int8 in the database.
 */
function beyondBounds(w: WalletRow, total: bigint): string | null {
  if (total > MAX_CREDITS_MICROS)
    return `usage of customer ${w.customerId} in this batch would exceed 9,000,000,000,000 credits`;
  if (w.available - total < -MAX_CREDITS_MICROS)
    return `the balance of customer ${w.customerId} would go below -9,000,000,000,000 credits`;
  // Counted as if no lot paid any of it (lots can only lower the arrears): one cheap, safe bound.
  if (w.arrears + total > MAX_CREDITS_MICROS)
    return `the arrears of customer ${w.customerId} could exceed 9,000,000,000,000 credits`;
  return null;
}

/**
 * Ingests a batch: validates each event, dedupes by (customerId, id), rates accepted events with
 * the card version in force at their timestamps, and debits them — all accepted events of the
 * request in ONE database transaction, one ledger transaction per customer.
 */
export async function ingestEvents(
  ledger: Ledger,
  resolver: RateCardResolver,
  rawEvents: readonly unknown[],
  now: Date,
): Promise<EventResult[]> {
  const results: EventResult[] = new Array<EventResult>(rawEvents.length);
  const valid: ValidEvent[] = [];
  rawEvents.forEach((raw, i) => {
    const v = validateEvent(raw, i, now);
    if (isValid(v)) valid.push(v);
    else results[i] = v;
  });
  if (valid.length === 0) return results;

  await ledger.runBatch(
    valid.map((e) => e.customerId),
    async ({ tx, wallets, now: txNow }) => {
      // Under the wallet locks, no concurrent request can insert these customers' events.
      const stored = await findEvents(
        tx,
        valid.filter((e) => wallets.has(e.customerId)),
      );
      const cards = await customerRateCards(tx, [...wallets.keys()]);
      const cardOf = (customerId: string) => cards.get(customerId) ?? DEFAULT_CARD;
      const resolve = await resolver.forNames(tx, [DEFAULT_CARD, ...cards.values()]);
      const seen = new Map<string, { hash: string; index: number }>();
      // This request's usage per customer, in batch order: an event that would overflow it is rejected.
      const perCustomer = new Map<string, bigint>();
      const accepted: { e: ValidEvent; micros: bigint; card: { name: string; version: number } }[] = [];
      for (const e of valid) {
        const key = eventKey(e.customerId, e.id);
        const reject = (code: EventError['code'], message: string) =>
          (results[e.index] = { index: e.index, id: e.id, status: 'rejected', error: { code, message } });
        if (!wallets.has(e.customerId)) {
          reject('unknown_customer', `customer ${e.customerId} does not exist`);
          continue;
        }
        const prior = stored.get(key);
        if (prior) {
          if (prior.contentHash !== e.hash) reject('conflict', 'an event with this id and different content exists');
          else
            results[e.index] = {
              index: e.index,
              id: e.id,
              status: 'duplicate',
              credits: formatCredits(prior.credits),
              transactionId: prior.transactionId,
            };
          continue;
        }
        const twin = seen.get(key);
        if (twin) {
          if (twin.hash !== e.hash)
            reject('conflict', `same id as event ${twin.index} of this batch, different content`);
          else results[e.index] = { index: e.index, id: e.id, status: 'duplicate' }; // filled in below
          continue;
        }
        const card = await resolve(cardOf(e.customerId), e.timestamp);
        if (!card) {
          reject(
            'no_rate',
            `no version of rate card ${cardOf(e.customerId)} is in force at ${e.timestamp.toISOString()}`,
          );
          continue;
        }
        const rated = rateEvent(card.rules, e);
        if (!rated.ok) {
          reject(rated.reason, rated.detail);
          continue;
        }
        const total = (perCustomer.get(e.customerId) ?? 0n) + rated.micros;
        const over = beyondBounds(wallets.get(e.customerId)!, total);
        if (over) {
          reject('too_large', over);
          continue;
        }
        perCustomer.set(e.customerId, total);
        seen.set(key, { hash: e.hash, index: e.index });
        accepted.push({ e, micros: rated.micros, card: { name: card.name, version: card.version } });
      }
      if (accepted.length === 0) return;

      // One ledger transaction per customer for this request.
      const batchId = randomUUID();
      const order = [...perCustomer.keys()];
      const posted = await postDebits(
        tx,
        txNow,
        order.map((customerId) => ({
          customerId,
          amount: perCustomer.get(customerId)!,
          key: `usage:${customerId}:${batchId}`,
          type: 'usage',
          reference: `events:${batchId}`,
        })),
      );
      const txOf = new Map(order.map((c, i) => [c, posted[i]!.transactionId]));
      const rows: NewEvent[] = accepted.map((a) => ({
        customerId: a.e.customerId,
        id: a.e.id,
        meter: a.e.meter,
        quantity: formatDecimal(a.e.quantity),
        occurredAt: a.e.timestamp,
        dimensions: a.e.dimensions,
        credits: a.micros,
        cardName: a.card.name,
        cardVersion: a.card.version,
        transactionId: txOf.get(a.e.customerId)!,
        contentHash: a.e.hash,
      }));
      await insertEvents(tx, rows);
      for (const a of accepted) {
        results[a.e.index] = {
          index: a.e.index,
          id: a.e.id,
          status: 'accepted',
          credits: formatCredits(a.micros),
          transactionId: txOf.get(a.e.customerId)!,
          rateCard: a.card,
        };
      }
      // In-batch duplicates point at their twin's outcome.
      for (const r of results) {
        if (r?.status === 'duplicate' && !r.transactionId) {
          const twin = results[seen.get(eventKey(valid.find((v) => v.index === r.index)!.customerId, r.id!))!.index]!;
          r.credits = twin.credits;
          r.transactionId = twin.transactionId;
        }
      }
    },
  );
  return results;
}
