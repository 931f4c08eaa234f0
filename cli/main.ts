import { createPool } from '../db/pool';
import { loadConfig } from '../lib/config';
import { runCli } from './commands';
import { Client, Connection } from '@temporalio/client';
import { startRefund } from '../client/payments';
import { notifyLifecycle } from '../client/lifecycle';
import { reconciliationStarter } from '../api/routes/reconciliation';

async function main(): Promise<number> {
  const config = loadConfig();
  const pool = createPool(config.DATABASE_URL, 2);
  const queue = config.TEMPORAL_TASK_QUEUE;
  let connection: Connection | undefined;
  // Connected only when a command needs Temporal.
  const temporal = async () => {
    connection ??= await Connection.connect({ address: config.TEMPORAL_ADDRESS });
    return new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
  };
  try {
    return await runCli(process.argv.slice(2), pool, {
      out: (l) => process.stdout.write(`${l}\n`),
      err: (l) => process.stderr.write(`${l}\n`),
      startRefund: async (input) => startRefund(await temporal(), queue, input),
      startReconciliation: async () => reconciliationStarter(await temporal(), queue)(),
      waitFor: async (workflowId) => {
        await (await temporal()).workflow.getHandle(workflowId).result();
      },
      lifecycle: async (customerId) => {
        await notifyLifecycle(await temporal(), queue, { customerId });
      },
    });
  } finally {
    await connection?.close();
    await pool.end();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`error: ${String(err)}\n`);
    process.exit(1);
  },
);
