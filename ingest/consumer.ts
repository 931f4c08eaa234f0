import type { AddressInfo } from 'node:net';
import { TopUpTrigger } from '../client/topups';
import { createPool } from '../db/pool';
import { Ledger } from '../ledger/ledger';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { TemporalHandle } from '../lib/temporal';
import { guardProcess } from '../lib/unavailable';
import { IngestBatcher } from '../metering/batcher';
import { ingestEvents } from '../metering/ingest';
import { RateCardResolver } from '../metering/rate-cards';
import { ensureTopics, KafkaIngest } from './kafka';
import { createConsumerMetrics, serveMetrics } from './metrics';

/**
 * Composition root of the ingest consumer (`node dist/ingest/consumer.js`): usage events from
 * Kafka into the ledger through the same group commit as POST /v1/events. Run as many as the
 * topic has partitions; the group shares them out.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger('creditflow-consumer', config.LOG_LEVEL);
  guardProcess(log);
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_SIZE, config.DATABASE_CONNECT_TIMEOUT_MS);
  const ledger = new Ledger(pool);
  const resolver = new RateCardResolver();
  const clock = () => new Date();
  const batcher = new IngestBatcher((events, now) => ingestEvents(ledger, resolver, events, now), clock);
  const temporal = new TemporalHandle(config.TEMPORAL_ADDRESS, config.TEMPORAL_NAMESPACE, log);
  // As after POST /v1/events: wallets left below their top-up threshold get their workflow (best effort).
  const topUps = new TopUpTrigger(pool, () => temporal.client(), config.TEMPORAL_TASK_QUEUE, { log });
  const brokers = config.KAFKA_BROKERS.split(',')
    .map((b) => b.trim())
    .filter(Boolean);
  await ensureTopics(brokers, config.KAFKA_TOPIC, config.KAFKA_TOPIC_PARTITIONS);

  // Scraped only after the consumer below exists.
  const metrics = createConsumerMetrics(config.KAFKA_TOPIC, () => ingest.lag());
  const ingest = new KafkaIngest({
    brokers,
    topic: config.KAFKA_TOPIC,
    groupId: config.KAFKA_GROUP_ID,
    batchMax: config.KAFKA_BATCH_MAX,
    sessionTimeoutMs: config.KAFKA_SESSION_TIMEOUT_MS,
    retryForMs: config.KAFKA_STORE_RETRY_MS,
    batcher,
    log,
    onBatch: (outcome, seconds) => {
      metrics.observe(outcome, seconds);
      if (outcome.debited.size > 0) topUps.check(outcome.debited);
    },
  });
  const server = await serveMetrics(metrics.registry, config.CONSUMER_METRICS_PORT, config.HOST);
  await ingest.start();
  log.info(
    { topic: config.KAFKA_TOPIC, group: config.KAFKA_GROUP_ID, metricsPort: (server.address() as AddressInfo).port },
    'consumer running',
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down consumer');
    setTimeout(() => process.exit(1), 15_000).unref(); // a batch stuck on the database
    await ingest.stop();
    server.close();
    await Promise.allSettled([topUps.settled(), temporal.close()]);
    await pool.end();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  // A batch that could not be stored within its retry bound: exit, the partitions move, nothing is lost.
  ingest.done().catch((err: unknown) => {
    log.fatal({ err }, 'could not store a batch; exiting (it will be replayed)');
    process.exit(1);
  });
}

main().catch((err: unknown) => {
  console.error(JSON.stringify({ level: 'fatal', msg: 'consumer failed to start', err: String(err) }));
  process.exit(1);
});
