import { NativeConnection } from '@temporalio/worker';
import { createPool } from '../db/pool';
import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { guardProcess } from '../lib/unavailable';
import { Client, Connection } from '@temporalio/client';
import { ensureSchedules } from './schedules';
import { createWorker } from './worker';
import { TopUpTrigger } from '../client/topups';
import { createGateway } from '../payments';
import { ensureWebhookSchedule } from '../webhooks/workflows';
import { installRuntime } from './runtime';

/** Composition root of the worker process. Ctrl-C/SIGTERM drain the worker, then close Postgres. */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger('creditflow-worker', config.LOG_LEVEL);
  guardProcess(log);
  installRuntime(log, config.LOG_LEVEL, config.WORKER_METRICS_ADDRESS);
  const pool = createPool(config.DATABASE_URL, config.DATABASE_POOL_SIZE, config.DATABASE_CONNECT_TIMEOUT_MS);
  const connection = await connectWithRetry(config.TEMPORAL_ADDRESS, log);
  const clientConnection = await Connection.connect({ address: config.TEMPORAL_ADDRESS });
  const client = new Client({ connection: clientConnection, namespace: config.TEMPORAL_NAMESPACE });
  await ensureSchedules(client, config.TEMPORAL_TASK_QUEUE);
  await ensureWebhookSchedule(client, config.TEMPORAL_TASK_QUEUE);
  const worker = await createWorker({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    pool,
    temporal: () => Promise.resolve(client),
    gateway: createGateway(config, pool),
    topUps: new TopUpTrigger(pool, () => Promise.resolve(client), config.TEMPORAL_TASK_QUEUE, { log }),
  });
  log.info({ taskQueue: config.TEMPORAL_TASK_QUEUE, address: config.TEMPORAL_ADDRESS }, 'worker running');
  await worker.run();
  await connection.close();
  await clientConnection.close();
  await pool.end();
  log.info('worker stopped');
}

async function connectWithRetry(address: string, log: ReturnType<typeof createLogger>): Promise<NativeConnection> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await NativeConnection.connect({ address });
    } catch (err) {
      if (attempt >= 60) throw err;
      log.warn({ address, attempt }, 'Temporal not reachable, retrying');
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

main().catch((err: unknown) => {
  console.error(JSON.stringify({ level: 'fatal', msg: 'worker failed', err: String(err) }));
  process.exit(1);
});
