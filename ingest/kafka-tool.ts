import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Consumer, ProduceAcks, Producer } from '@platformatic/kafka';
import { loadConfig } from '../lib/config';

/**
 * `node dist/ingest/kafka-tool.js produce|read|offsets`: a small Kafka client for trying ingestion
 * without Kafka's own shell tools (which creditflow does not ship), also used by the tests, which
 * cannot load the ESM-only client inside Jest.
 *   produce [--file events.jsonl]   one event per line (key = its customerId); --raw: lines of
 *                                   {"key"?: string, "value"?: base64} sent as they are
 *   read --topic T                  every record up to the end now, one JSON line each
 *   offsets --group G               the topic's end offsets and the group's committed offsets
 */

export interface RawRecord {
  key?: string;
  /** base64, so tests can send bytes that are not UTF-8. */
  value?: string;
}

export async function produce(brokers: string[], topic: string, records: RawRecord[], chunk = 5000): Promise<void> {
  const producer = new Producer({ clientId: 'creditflow-tool', bootstrapBrokers: brokers });
  try {
    for (let i = 0; i < records.length; i += chunk) {
      await producer.send({
        acks: ProduceAcks.ALL,
        messages: records.slice(i, i + chunk).map((r) => ({
          topic,
          key: r.key === undefined ? undefined : Buffer.from(r.key),
          value: r.value === undefined ? undefined : Buffer.from(r.value, 'base64'),
        })),
      });
    }
  } finally {
    await producer.close();
  }
}

export interface ReadRecord {
  partition: number;
  offset: string;
  key: string | null;
  /** base64 */
  value: string | null;
  headers: Record<string, string>;
}

const tempGroup = () => `creditflow-tool-${randomBytes(4).toString('hex')}`;

/** End offset per partition (the offset the next record will get). */
export async function endOffsets(brokers: string[], topic: string): Promise<bigint[]> {
  const c = new Consumer({ clientId: 'creditflow-tool', groupId: tempGroup(), bootstrapBrokers: brokers });
  try {
    return (await c.listOffsets({ topics: [topic] })).get(topic) ?? [];
  } finally {
    await c.close();
  }
}

/** The group's committed offset per partition (-1: none), beside the ends. */
export async function groupOffsets(brokers: string[], topic: string, groupId: string) {
  const c = new Consumer({ clientId: 'creditflow-tool', groupId, bootstrapBrokers: brokers });
  try {
    const ends = (await c.listOffsets({ topics: [topic] })).get(topic) ?? [];
    const committed = await c.listCommittedOffsets({ topics: [{ topic, partitions: ends.map((_, p) => p) }] });
    return { ends, committed: committed.get(topic) ?? [] };
  } finally {
    await c.close();
  }
}

/** Every record of the topic from its start up to its end now (a throw-away group; commits nothing). */
export async function readAll(brokers: string[], topic: string, timeoutMs = 60_000): Promise<ReadRecord[]> {
  const total = (await endOffsets(brokers, topic)).reduce((s, e) => s + e, 0n);
  const out: ReadRecord[] = [];
  if (total === 0n) return out;
  const c = new Consumer({ clientId: 'creditflow-tool', groupId: tempGroup(), bootstrapBrokers: brokers });
  try {
    const stream = await c.consume({ topics: [topic], mode: 'earliest', autocommit: false });
    const deadline = setTimeout(() => void stream.close(), timeoutMs);
    for await (const m of stream) {
      out.push({
        partition: m.partition,
        offset: String(m.offset),
        key: m.key ? m.key.toString() : null,
        value: m.value ? m.value.toString('base64') : null,
        headers: Object.fromEntries([...m.headers].map(([k, v]) => [k.toString(), v.toString()])),
      });
      if (BigInt(out.length) >= total) break;
    }
    clearTimeout(deadline);
    await stream.close();
    return out;
  } finally {
    await c.close();
  }
}

async function lines(file: string | undefined): Promise<string[]> {
  const rl = createInterface({ input: file ? createReadStream(file) : process.stdin, crlfDelay: Infinity });
  const out: string[] = [];
  for await (const line of rl) if (line.trim()) out.push(line);
  return out;
}

async function main(): Promise<void> {
  const config = loadConfig();
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      brokers: { type: 'string', default: config.KAFKA_BROKERS },
      topic: { type: 'string', default: config.KAFKA_TOPIC },
      group: { type: 'string', default: config.KAFKA_GROUP_ID },
      file: { type: 'string' },
      raw: { type: 'boolean', default: false },
    },
  });
  const brokers = values.brokers.split(',');
  const json = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : x));
  // Into a pipe, stdout is written asynchronously: exit only after it is flushed.
  const print = (lines: string[]) =>
    new Promise<void>((resolve, reject) =>
      process.stdout.write(lines.map((l) => `${l}\n`).join(''), (err) => (err ? reject(err) : resolve())),
    );
  switch (positionals[0]) {
    case 'produce': {
      const records = (await lines(values.file)).map((line): RawRecord => {
        if (values.raw) return JSON.parse(line) as RawRecord;
        const e = JSON.parse(line) as { customerId?: unknown };
        return {
          key: typeof e.customerId === 'string' ? e.customerId : undefined,
          value: Buffer.from(line).toString('base64'),
        };
      });
      await produce(brokers, values.topic, records);
      await print([json({ produced: records.length, topic: values.topic })]);
      break;
    }
    case 'read':
      await print((await readAll(brokers, values.topic)).map(json));
      break;
    case 'offsets':
      await print([json(await groupOffsets(brokers, values.topic, values.group))]);
      break;
    default:
      throw new Error('usage: kafka-tool.js produce|read|offsets [--brokers] [--topic] [--group] [--file] [--raw]');
  }
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(String(err));
      process.exit(1);
    },
  );
}
