import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';

/**
 * The bench/holds reference worker, in its own process like the subject's (dist/worker/main.js),
 * with the same default worker options. Tells its parent when it polls; SIGTERM drains it.
 */
async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const connection = await NativeConnection.connect({ address: process.env.TEMPORAL_ADDRESS! });
  const worker = await Worker.create({
    connection,
    taskQueue: process.env.TEMPORAL_TASK_QUEUE!,
    workflowsPath: require.resolve('./reference-workflow'),
    activities: { noop: () => Promise.resolve() },
  });
  const running = worker.run();
  process.send?.('ready');
  await running;
  await connection.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
