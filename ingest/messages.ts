import { scanJson } from '../api/body';
import type { IngestBatcher } from '../metering/batcher';
import { MAX_BATCH, type EventResult } from '../metering/ingest';

/** One record of the usage topic: key = customer id, value = one event as POST /v1/events takes it. */
export interface UsageMessage {
  key: Buffer | undefined;
  value: Buffer | undefined;
  headers: Map<Buffer, Buffer>;
  topic: string;
  partition: number;
  offset: bigint;
}

/** A record that will never be debited, and why: it goes to the dead-letter topic. */
export interface Rejection {
  message: UsageMessage;
  code: string;
  reason: string;
}

export interface BatchOutcome {
  accepted: number;
  duplicate: number;
  rejected: Rejection[];
  /** Customers with a debit committed by this batch (for the top-up check, as after HTTP). */
  debited: Set<string>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
/** A message value larger than an HTTP body could be is refused like one. */
export const MAX_VALUE_BYTES = 1024 * 1024;

/**
 * The event a record carries, decoded as strictly as the HTTP body reader does (UTF-8, JSON,
 * no duplicate keys, nothing PostgreSQL cannot store), or why it is refused. The event itself
 * is validated later, by the same code as HTTP (metering/ingest.ts validateEvent).
 */
export function decodeMessage(m: UsageMessage): { event: unknown } | { code: string; reason: string } {
  const invalid = (reason: string) => ({ code: 'invalid', reason });
  if (!m.value || m.value.length === 0) return invalid('the message has no value');
  if (m.value.length > MAX_VALUE_BYTES) return invalid(`the value is larger than ${MAX_VALUE_BYTES} bytes`);
  let text: string;
  try {
    text = utf8.decode(m.value);
  } catch {
    return invalid('the value is not valid UTF-8');
  }
  let event: unknown;
  try {
    event = JSON.parse(text);
  } catch {
    return invalid('the value is not valid JSON');
  }
  if (event === null || typeof event !== 'object' || Array.isArray(event))
    return invalid('the value must be one event, a JSON object');
  const issue = scanJson(text, 'event')[0];
  if (issue) return invalid(`${issue.path}: ${issue.message}`);
  // The key decides the partition, so one customer's events stay in order on one consumer.
  const customerId = (event as { customerId?: unknown }).customerId;
  let key: string | undefined;
  try {
    key = m.key && m.key.length > 0 ? utf8.decode(m.key) : undefined;
  } catch {
    return invalid('the message key is not valid UTF-8');
  }
  if (typeof customerId === 'string' && key !== customerId)
    return invalid(
      `the message key must be the event's customerId (${key === undefined ? 'no key' : 'a different key'})`,
    );
  return { event };
}

/**
 * Rates and debits a batch of records through the HTTP path's group commit (metering/batcher.ts →
 * ingestEvents): same validation, same dedupe by (customerId, id), same results.
 * Resolves once every accepted event is committed; rejects when the database is unavailable, and
 * then nothing of the batch may be acknowledged to Kafka (a retry is harmless: dedupe).
 */
export async function ingestMessages(batcher: IngestBatcher, messages: readonly UsageMessage[]): Promise<BatchOutcome> {
  const out: BatchOutcome = { accepted: 0, duplicate: 0, rejected: [], debited: new Set() };
  const slices = new Map<number, { message: UsageMessage; event: unknown }[]>();
  for (const message of messages) {
    const d = decodeMessage(message);
    if ('reason' in d) {
      out.rejected.push({ message, code: d.code, reason: d.reason });
      continue;
    }
    const slice = slices.get(message.partition) ?? [];
    slice.push({ message, event: d.event });
    slices.set(message.partition, slice);
  }
  // A partition's records in order, one request after another (a customer's events are debited
  // in the order they were produced); partitions — disjoint customers — side by side.
  const record = (slice: { message: UsageMessage; event: unknown }[], results: EventResult[]) =>
    results.forEach((res, i) => {
      const { message, event } = slice[i]!;
      if (res.status === 'accepted') {
        out.accepted++;
        out.debited.add((event as { customerId: string }).customerId);
      } else if (res.status === 'duplicate') out.duplicate++;
      else out.rejected.push({ message, code: res.error!.code, reason: res.error!.message });
    });
  await Promise.all(
    [...slices.values()].map(async (slice) => {
      for (let i = 0; i < slice.length; i += MAX_BATCH) {
        const part = slice.slice(i, i + MAX_BATCH);
        record(
          part,
          await batcher.submit(
            part.map((x) => x.event),
            null,
          ),
        );
      }
    }),
  );
  return out;
}
