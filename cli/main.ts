import { createPool } from '../db/pool';
import { loadConfig } from '../lib/config';
import { runCli } from './commands';
import { Client, Connection } from '@temporalio/client';
import { startRefund } from '../client/payments';

async function main(): Promise<number> {
  const config = loadConfig();
  const pool = createPool(config.DATABASE_URL, 2);
  let connection: Connection | undefined;
  try {
    return await runCli(process.argv.slice(2), pool, {
      out: (l) => process.stdout.write(`${l}\n`),
      err: (l) => process.stderr.write(`${l}\n`),
      // Connected only when a command needs Temporal.
      startRefund: async (input) => {
        connection ??= await Connection.connect({ address: config.TEMPORAL_ADDRESS });
        const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
        return startRefund(client, config.TEMPORAL_TASK_QUEUE, input);
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
