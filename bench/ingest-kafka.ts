import { execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { ProduceAcks, Producer } from '@platformatic/kafka';
import type { Pool } from '../db/pool';
import { cpuSeconds, openLoop, ownChild, stats } from './lib';

/**
 * The Kafka row of bench/ingest: events produced to a real broker (acks=all) and debited by the
 * ingest consumer process, measured from the send to the event's row in the ledger. First a fixed
 * number of events as fast as the producers push them (throughput, until the last is debited), then open-loop at 80 % of that rate (latency and
 * consumer lag, read from the consumer's own /metrics once a second).
 */
interface Event {
  id: string;
  customerId: string;
}

const ROOT = path.resolve(__dirname, '..', '..');
const TOPIC = 'bench.usage';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface KafkaFigures {
  partitions: number;
  maxRate: number;
  maxLatency: ReturnType<typeof stats>;
  /** CPU µs per event in the throughput phase. */
  cpu: { consumer: number; pg: number; broker: number };
  steadyRate: number;
  steadyLatency: ReturnType<typeof stats>;
  lag: { max: number; firstThird: number; lastThird: number; samples: number };
}

export async function kafkaBench(o: {
  url: string;
  pool: Pool;
  /** Events of the throughput phase, produced as fast as the producers can. */
  events: number;
  steadySeconds: number;
  clients: number;
  batch: number;
  next: () => Event;
  port: number;
  phase: (name: string) => void;
  pgCpu: () => number;
}): Promise<KafkaFigures> {
  const partitions = 4;
  const dir = path.join(ROOT, '.data/bench/kafka');
  const script = path.join(ROOT, 'scripts/kafka.sh');
  execFileSync('bash', [script, 'stop', dir], { stdio: 'inherit' });
  rmSync(dir, { recursive: true, force: true });
  execFileSync('bash', [script, 'start', dir, String(o.port), String(o.port + 1)], { stdio: 'inherit' });
  const brokers = `127.0.0.1:${o.port}`;
  const metricsPort = o.port + 2;
  const consumer = ownChild(
    spawn(process.execPath, ['dist/ingest/consumer.js'], {
      env: {
        ...process.env,
        DATABASE_URL: o.url,
        DATABASE_POOL_SIZE: '20',
        KAFKA_BROKERS: brokers,
        KAFKA_TOPIC: TOPIC,
        KAFKA_TOPIC_PARTITIONS: String(partitions),
        CONSUMER_METRICS_PORT: String(metricsPort),
        HOST: '127.0.0.1',
        TEMPORAL_ADDRESS: '127.0.0.1:1',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('"msg":"consumer running"')) {
        consumer.stdout!.off('data', onData);
        consumer.stdout!.resume();
        resolve();
      }
    };
    consumer.stdout!.on('data', onData);
    consumer.once('exit', (code) => reject(new Error(`consumer exited (${code}): ${out.slice(-2000)}`)));
  });
  const producer = new Producer({ clientId: 'bench', bootstrapBrokers: [brokers] });
  const sentAt = new Map<string, number>();
  const send = async (n: number) => {
    const events = Array.from({ length: n }, o.next);
    const now = Date.now();
    for (const e of events) sentAt.set(e.id, now);
    await producer.send({
      acks: ProduceAcks.ALL,
      messages: events.map((e) => ({
        topic: TOPIC,
        key: Buffer.from(e.customerId),
        value: Buffer.from(JSON.stringify(e)),
      })),
    });
  };
  /** Records the consumer has not committed, from its own /metrics (commits follow the ledger's). */
  const lag = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const series = [...text.matchAll(/^creditflow_ingest_lag_records\{[^}]*\} (\d+)/gm)];
    return series.length === partitions ? series.reduce((s, m) => s + Number(m[1]), 0) : Infinity;
  };
  /** Waits until every event sent so far is in the ledger; returns when (ms since epoch). */
  const drained = async () => {
    for (;;) {
      if ((await lag()) === 0) return Date.now();
      await sleep(100);
    }
  };
  /** produce → debited (ms) for the events sent in a phase: the row's received_at is its transaction's start. */
  const latencies = async (ids: Set<string>, since: Date) => {
    const rows = await o.pool.query<{ id: string; at: string }>(
      `SELECT id, (extract(epoch FROM received_at) * 1000)::text at FROM usage_events WHERE received_at >= $1`,
      [since],
    );
    return rows.rows.filter((r) => ids.has(r.id)).map((r) => Number(r.at) - sentAt.get(r.id)!);
  };

  try {
    // Warm-up: topic metadata, the consumer's first fetches and connections.
    await send(o.batch);
    await drained();

    o.phase('kafka: throughput');
    sentAt.clear();
    const since = new Date();
    const cpu = () => ({
      consumer: cpuSeconds((_c, pid) => pid === consumer.pid),
      pg: o.pgCpu(),
      broker: cpuSeconds((cmd) => cmd.includes('kafka.Kafka') && cmd.includes(dir)),
    });
    const cpu0 = cpu();
    const t0 = Date.now();
    let left = Math.ceil(o.events / o.batch);
    await Promise.all(
      Array.from({ length: o.clients }, async () => {
        while (left-- > 0) await send(o.batch);
      }),
    );
    const produced = sentAt.size;
    const t1 = await drained();
    const maxRate = (produced * 1000) / (t1 - t0);
    const cpu1 = cpu();
    const perEvent = (k: 'consumer' | 'pg' | 'broker') => ((cpu1[k] - cpu0[k]) / produced) * 1e6;
    const maxLatency = stats(await latencies(new Set(sentAt.keys()), since));

    o.phase('kafka: 80 % of that rate');
    sentAt.clear();
    const steadyRate = 0.8 * maxRate;
    const chunk = 100;
    const lags: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        lags.push(await lag());
        await sleep(1000);
      }
    })();
    const since2 = new Date();
    await openLoop(steadyRate / chunk, o.steadySeconds, () => send(chunk));
    sampling = false;
    await sampler;
    await drained();
    const steadyLatency = stats(await latencies(new Set(sentAt.keys()), since2));
    const third = Math.max(1, Math.floor(lags.length / 3));
    const avg = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
    return {
      partitions,
      maxRate,
      maxLatency,
      cpu: { consumer: perEvent('consumer'), pg: perEvent('pg'), broker: perEvent('broker') },
      steadyRate,
      steadyLatency,
      lag: {
        max: Math.max(0, ...lags),
        firstThird: avg(lags.slice(0, third)),
        lastThird: avg(lags.slice(-third)),
        samples: lags.length,
      },
    };
  } finally {
    await producer.close();
    consumer.kill('SIGTERM');
    await new Promise((r) => (consumer.exitCode !== null ? r(null) : consumer.once('exit', r)));
    execFileSync('bash', [script, 'stop', dir], { stdio: 'inherit' });
  }
}
