import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { RawRecord, ReadRecord } from '../../ingest/kafka-tool';
import { freePort } from './ports';
import { ROOT, TEST_DATA } from './paths';
import { spawnProcess, type WorkerProcess } from './workers';

const run = promisify(execFile);

export interface TestKafka {
  brokers: string;
  stop: () => Promise<void>;
}

/**
 * A real single-node KRaft broker for one test file (scripts/kafka.sh; its jars from Maven Central,
 * fetched once into .tools). Started lazily by the files that need it, so other runs pay nothing.
 */
export async function startKafka(): Promise<TestKafka> {
  const dir = path.join(TEST_DATA, `kafka-${randomBytes(4).toString('hex')}`);
  const port = await freePort();
  const controller = await freePort();
  const script = path.join(ROOT, 'scripts/kafka.sh');
  await run('bash', [script, 'start', dir, String(port), String(controller)], { timeout: 300_000 });
  return {
    brokers: `127.0.0.1:${port}`,
    stop: async () => {
      await run('bash', [script, 'stop', dir], { timeout: 60_000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The Kafka client is ESM-only, which Jest's module system cannot load on Node 20: tests drive
 * Kafka through the compiled tool (ingest/kafka-tool.ts) in a child process.
 */
async function tool(brokers: string, args: string[]): Promise<string> {
  const { stdout } = await run(
    process.execPath,
    [path.join(ROOT, 'dist/ingest/kafka-tool.js'), ...args, '--brokers', brokers],
    {
      maxBuffer: 1 << 30,
      timeout: 120_000,
    },
  );
  return stdout;
}

export type Record_ = { key?: string; value?: string | Buffer };

/** Produces records in order (acks=all). */
export async function produce(brokers: string, topic: string, records: Record_[]): Promise<void> {
  const file = path.join(TEST_DATA, `records-${randomBytes(4).toString('hex')}.jsonl`);
  const raw = records.map((r): RawRecord => ({
    key: r.key,
    value: r.value === undefined ? undefined : Buffer.from(r.value).toString('base64'),
  }));
  writeFileSync(file, raw.map((r) => JSON.stringify(r)).join('\n'));
  try {
    await tool(brokers, ['produce', '--raw', '--topic', topic, '--file', file]);
  } finally {
    rmSync(file, { force: true });
  }
}

/** Every record of the topic up to its end now. */
export async function readAll(brokers: string, topic: string): Promise<(ReadRecord & { bytes: Buffer | null })[]> {
  const out = await tool(brokers, ['read', '--topic', topic]);
  return out
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const r = JSON.parse(l) as ReadRecord;
      return { ...r, bytes: r.value === null ? null : Buffer.from(r.value, 'base64') };
    });
}

/** The topic's end offsets and the group's committed offsets (-1: none), per partition. */
export async function offsets(
  brokers: string,
  topic: string,
  group: string,
): Promise<{ ends: bigint[]; committed: bigint[] }> {
  const o = JSON.parse(await tool(brokers, ['offsets', '--topic', topic, '--group', group])) as {
    ends: string[];
    committed: string[];
  };
  return { ends: o.ends.map(BigInt), committed: o.committed.map(BigInt) };
}

/** The real consumer process (dist/ingest/consumer.js); ready once it logged that it consumes. */
export function spawnConsumer(o: {
  databaseUrl: string;
  brokers: string;
  topic: string;
  groupId: string;
  metricsPort: number;
  temporalAddress?: string;
  env?: Record<string, string>;
}): WorkerProcess {
  return spawnProcess(
    'ingest/consumer.js',
    {
      DATABASE_URL: o.databaseUrl,
      DATABASE_POOL_SIZE: '8',
      KAFKA_BROKERS: o.brokers,
      KAFKA_TOPIC: o.topic,
      KAFKA_GROUP_ID: o.groupId,
      KAFKA_SESSION_TIMEOUT_MS: '6000',
      CONSUMER_METRICS_PORT: String(o.metricsPort),
      HOST: '127.0.0.1',
      TEMPORAL_ADDRESS: o.temporalAddress ?? '127.0.0.1:1',
      LOG_LEVEL: 'info',
      ...o.env,
    },
    'consumer running',
  );
}
