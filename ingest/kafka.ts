import { Admin, Consumer, ProduceAcks, Producer, type Message, type MessagesStream } from '@platformatic/kafka';
import type { Logger } from '../lib/logger';
import type { IngestBatcher } from '../metering/batcher';
import { ingestMessages, type BatchOutcome, type Rejection, type UsageMessage } from './messages';

export interface KafkaIngestOptions {
  brokers: string[];
  topic: string;
  groupId: string;
  batchMax: number;
  sessionTimeoutMs: number;
  /** A batch that cannot be stored is retried this long (harmless: dedupe), then the process exits. */
  retryForMs: number;
  batcher: IngestBatcher;
  log: Logger;
  /** After each batch commits (metrics, the top-up check). */
  onBatch?: (outcome: BatchOutcome, seconds: number) => void;
}

type Raw = Message<Buffer, Buffer, Buffer, Buffer>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const deadLetterTopic = (topic: string) => `${topic}.rejected`;

/** Creates the usage topic and its dead-letter topic when missing (a managed cluster may have made them). */
export async function ensureTopics(brokers: string[], topic: string, partitions: number): Promise<void> {
  const admin = new Admin({ clientId: 'creditflow-admin', bootstrapBrokers: brokers });
  try {
    const existing = new Set(await admin.listTopics());
    const missing = [topic, deadLetterTopic(topic)].filter((t) => !existing.has(t));
    if (missing.length > 0) {
      await admin.createTopics({ topics: missing, partitions, replicas: -1 }).catch((err: unknown) => {
        // Another consumer created them meanwhile.
        if (!String(err).includes('TOPIC_ALREADY_EXISTS') && !/already exists/i.test(String(err))) throw err;
      });
    }
  } finally {
    await admin.close();
  }
}

/**
 * The Kafka side of ingestion. Records are queued per partition from the group's stream and taken
 * a batch at a time per partition; each batch is debited through the HTTP path's group commit, its
 * rejected records are written to `<topic>.rejected`, and only then is its offset committed. A crash anywhere before the
 * commit replays the batch, which dedupe by (customerId, id) makes harmless; offsets are never
 * ahead of the database.
 */
export class KafkaIngest {
  private consumer: Consumer<Buffer, Buffer, Buffer, Buffer>;
  private producer: Producer<Buffer, Buffer, Buffer, Buffer>;
  private stream: MessagesStream<Buffer, Buffer, Buffer, Buffer> | undefined;
  /** Records received and not yet taken, per partition (at most 4 × batchMax in all). */
  private readonly queues = new Map<number, Raw[]>();
  private buffered = 0;
  /** The pipeline of each partition with records in hand: one batch at a time, in offset order. */
  private readonly pipelines = new Map<number, Promise<void>>();
  private stopping = false;
  private failed: ((err: unknown) => void) | undefined;
  private readonly failure = new Promise<void>((_, reject) => (this.failed = reject));

  constructor(private readonly o: KafkaIngestOptions) {
    this.consumer = new Consumer({
      clientId: 'creditflow-consumer',
      groupId: o.groupId,
      bootstrapBrokers: o.brokers,
      sessionTimeout: o.sessionTimeoutMs,
      heartbeatInterval: Math.max(500, Math.floor(o.sessionTimeoutMs / 5)),
      rebalanceTimeout: Math.max(30_000, o.sessionTimeoutMs),
      maxWaitTime: 200,
    });
    this.producer = new Producer({ clientId: 'creditflow-dead-letters', bootstrapBrokers: o.brokers });
  }

  /** Joins the group and starts consuming; resolves once the stream is open. */
  async start(): Promise<void> {
    const stream = await this.consumer.consume({
      topics: [this.o.topic],
      mode: 'committed',
      fallbackMode: 'earliest',
      autocommit: false,
      highWaterMark: this.o.batchMax,
    });
    this.stream = stream;
    stream.on('data', (m: Raw) => {
      const queue = this.queues.get(m.partition) ?? [];
      queue.push(m);
      this.queues.set(m.partition, queue);
      // Backpressure: a consumer behind the broker holds a bounded number of records.
      if (++this.buffered >= 4 * this.o.batchMax) stream.pause();
      if (!this.pipelines.has(m.partition)) this.pipeline(m.partition);
    });
    stream.on('error', (err: unknown) => this.o.log.error({ err }, 'Kafka stream error'));
  }

  /** Rejects when a batch could not be stored within its retry bound (the process should exit). */
  done(): Promise<void> {
    return this.failure;
  }

  /** Finishes the batches in hand, then leaves the group (its partitions move at once). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled([...this.pipelines.values()]);
    await this.stream?.close().catch(() => undefined);
    await this.consumer.close().catch(() => undefined);
    await this.producer.close().catch(() => undefined);
  }

  /** Records the group has not committed, per partition this consumer holds. */
  async lag(): Promise<Map<number, bigint>> {
    const lag = new Map<number, bigint>();
    const held = (this.consumer.assignments ?? []).find((a) => a.topic === this.o.topic)?.partitions ?? [];
    if (held.length === 0) return lag;
    const latest = (await this.consumer.listOffsets({ topics: [this.o.topic] })).get(this.o.topic) ?? [];
    const committed =
      (
        await this.consumer.listCommittedOffsets({
          topics: [{ topic: this.o.topic, partitions: latest.map((_, p) => p) }],
        })
      ).get(this.o.topic) ?? [];
    for (const p of held) {
      const end = latest[p] ?? 0n;
      const at = committed[p] ?? -1n;
      lag.set(p, at < 0n ? end : end - at);
    }
    return lag;
  }

  /**
   * Takes a partition's records a batch at a time until its queue is empty. Partitions hold
   * disjoint customers, so their pipelines run side by side and none waits for a slower one.
   */
  private pipeline(partition: number): void {
    const run = async () => {
      const queue = this.queues.get(partition)!;
      while (!this.stopping && queue.length > 0) {
        const batch = queue.splice(0, this.o.batchMax);
        this.buffered -= batch.length;
        if (this.stream?.isPaused() && this.buffered < 2 * this.o.batchMax) this.stream.resume();
        await this.handle(batch);
      }
    };
    this.pipelines.set(
      partition,
      run()
        .catch((err: unknown) => {
          this.stopping = true;
          this.failed?.(err);
        })
        .finally(() => {
          this.pipelines.delete(partition);
          // Records that arrived as the loop ended.
          if (!this.stopping && (this.queues.get(partition)?.length ?? 0) > 0) this.pipeline(partition);
        }),
    );
  }

  private async handle(batch: Raw[]): Promise<void> {
    const started = performance.now();
    const messages: UsageMessage[] = batch.map((m) => ({
      key: m.key,
      value: m.value,
      headers: m.headers,
      topic: m.topic,
      partition: m.partition,
      offset: m.offset,
    }));
    const outcome = await this.retrying('store the batch', () => ingestMessages(this.o.batcher, messages));
    if (outcome.rejected.length > 0) await this.retrying('write dead letters', () => this.deadLetter(outcome.rejected));
    // The next offset to read, per partition: everything before it is in the database or dead-lettered.
    const next = new Map<string, { topic: string; partition: number; offset: bigint }>();
    for (const m of batch) {
      const k = `${m.topic}/${m.partition}`;
      const cur = next.get(k);
      if (!cur || cur.offset <= m.offset)
        next.set(k, { topic: m.topic, partition: m.partition, offset: m.offset + 1n });
    }
    try {
      await this.consumer.commit({ offsets: [...next.values()].map((o) => ({ ...o, leaderEpoch: -1 })) });
    } catch (err) {
      // Partitions moved to another consumer meanwhile: it replays from the last commit; dedupe.
      this.o.log.warn({ err: String(err) }, 'offset commit failed; the batch will be replayed, harmlessly');
    }
    this.o.onBatch?.(outcome, (performance.now() - started) / 1000);
  }

  private async deadLetter(rejected: Rejection[]): Promise<void> {
    await this.producer.send({
      acks: ProduceAcks.ALL,
      messages: rejected.map((r) => {
        const headers = new Map<Buffer, Buffer>(r.message.headers);
        headers.set(Buffer.from('creditflow-error-code'), Buffer.from(r.code));
        headers.set(Buffer.from('creditflow-error-reason'), Buffer.from(r.reason));
        headers.set(
          Buffer.from('creditflow-source'),
          Buffer.from(`${r.message.topic}/${r.message.partition}/${r.message.offset}`),
        );
        return {
          topic: deadLetterTopic(this.o.topic),
          key: r.message.key,
          value: r.message.value,
          headers,
        };
      }),
    });
    this.o.log.info({ count: rejected.length }, 'records rejected to the dead-letter topic');
  }

  /** Retries an infrastructure failure with backoff for a bounded time, then gives up (the caller exits). */
  private async retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.o.retryForMs;
    for (let delay = 250; ; delay = Math.min(delay * 2, 5000)) {
      try {
        return await fn();
      } catch (err) {
        if (Date.now() + delay > deadline) throw err;
        this.o.log.warn({ err: String(err), retryInMs: delay }, `could not ${what}; retrying`);
        await sleep(delay);
      }
    }
  }
}
