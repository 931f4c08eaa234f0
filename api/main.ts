import type { Server } from 'node:http';
import { bootstrapKeys } from '../db/bootstrap';
import { createPool } from '../db/pool';
import { Ledger } from '../ledger/ledger';
import { DEV_ADMIN_KEY, loadConfig } from '../lib/config';
import { sha256 } from '../lib/hash';
import { createLogger } from '../lib/logger';
import { TemporalHandle } from '../lib/temporal';
import { guardProcess } from '../lib/unavailable';
import { HoldsClient } from '../client/holds';
import { notifyLifecycle } from '../client/lifecycle';
import { assertWorkerPolling } from '../client/workers';
import { createApp } from './app';
import { PaymentsClient } from '../client/payments';
import { TopUpTrigger } from '../client/topups';
import { createGateway } from '../payments';
import { reconciliationStarter } from './routes/reconciliation';
import { startWebhookDelivery } from '../webhooks/workflows';
import { BalanceStreams } from './balance-streams';
import { PortalTokens } from './portal-tokens';

const SHUTDOWN_GRACE_MS = 5_000;

/** Composition root of the API process. */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger('creditflow-api', config.LOG_LEVEL);
  guardProcess(log);
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_SIZE, config.DATABASE_CONNECT_TIMEOUT_MS);
  const development = config.CREDITFLOW_MODE === 'development';
  await bootstrapKeys(pool, {
    adminKeyHash: config.CREDITFLOW_ADMIN_KEY ? sha256(config.CREDITFLOW_ADMIN_KEY) : undefined,
    devKeyHash: sha256(DEV_ADMIN_KEY),
    development,
  });
  if (development)
    log.warn({ devKey: DEV_ADMIN_KEY }, 'development mode: the documented development admin key is active');
  const temporal = new TemporalHandle(config.TEMPORAL_ADDRESS, config.TEMPORAL_NAMESPACE, log);
  temporal.ready().catch((err: unknown) => log.warn({ err: String(err) }, 'Temporal not reachable yet'));
  let holdsClient: HoldsClient | undefined; // one per process, over the one connection
  let paymentsClient: PaymentsClient | undefined;
  const gateway = createGateway(config, pool);
  if (gateway.name === 'sandbox' && !development)
    log.warn('PAYMENT_GATEWAY=sandbox in production mode: purchases are not charged to anyone');
  if (!config.PORTAL_TOKEN_SECRET)
    log.warn(
      'PORTAL_TOKEN_SECRET is not set: portal tokens are signed with a random secret and only this process, until it stops, accepts them',
    );
  const portalTokens = new PortalTokens(config.PORTAL_TOKEN_SECRET);
  const balanceStreams = new BalanceStreams(pool, {
    maxStreams: config.BALANCE_STREAM_MAX,
    heartbeatMs: config.BALANCE_STREAM_HEARTBEAT_MS,
  });
  const topUps = new TopUpTrigger(pool, () => temporal.client(), config.TEMPORAL_TASK_QUEUE, { log });
  const app = createApp({
    pool,
    ledger: new Ledger(pool),
    logger: log,
    temporalReady: () => temporal.ready(),
    // Hold operations need a worker: readiness says so when none polls the task queue.
    workerReady: async () => assertWorkerPolling(await temporal.client(), config.TEMPORAL_TASK_QUEUE),
    lifecycle: async (customerId) => {
      await notifyLifecycle(await temporal.client(), config.TEMPORAL_TASK_QUEUE, { customerId });
    },
    holds: async () => (holdsClient ??= new HoldsClient(await temporal.client(), config.TEMPORAL_TASK_QUEUE)),
    gateway,
    payments: async () => (paymentsClient ??= new PaymentsClient(await temporal.client(), config.TEMPORAL_TASK_QUEUE)),
    topUps,
    webhooks: async (id) => startWebhookDelivery(await temporal.client(), config.TEMPORAL_TASK_QUEUE, id),
    reconciliation: async () => reconciliationStarter(await temporal.client(), config.TEMPORAL_TASK_QUEUE)(),
    balanceStreams,
    portalTokens,
    publicUrl: config.PUBLIC_URL,
    bodyLimit: config.BODY_LIMIT,
    metricsCacheMs: config.METRICS_CACHE_MS,
  });
  const server: Server = app.listen(config.PORT, config.HOST, () => {
    log.info(
      { url: `http://${config.HOST === '0.0.0.0' ? '127.0.0.1' : config.HOST}:${config.PORT}` },
      'API listening',
    );
  });
  // Graceful: stop accepting, let in-flight requests finish for a bounded time, then cut them off.
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down API');
    // Open streams would keep the server from closing: end them (browsers reconnect elsewhere).
    balanceStreams.close();
    server.close(() => {
      void Promise.allSettled([pool.end(), temporal.close()]).then(() => process.exit(0));
    });
    server.closeIdleConnections();
    setTimeout(() => {
      log.warn('requests still in flight after the grace period; closing their connections');
      server.closeAllConnections();
    }, SHUTDOWN_GRACE_MS).unref();
    // A handler stuck on the database keeps its pool client: pool.end() would wait for it.
    setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS + 2_000).unref();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err: unknown) => {
  console.error(JSON.stringify({ level: 'fatal', msg: 'API failed to start', err: String(err) }));
  process.exit(1);
});
