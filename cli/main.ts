import { createPool } from '../db/pool';
import { loadConfig } from '../lib/config';
import { runCli } from './commands';

async function main(): Promise<number> {
  const pool = createPool(loadConfig().DATABASE_URL, 2);
  try {
    return await runCli(process.argv.slice(2), pool, {
      out: (l) => process.stdout.write(`${l}\n`),
      err: (l) => process.stderr.write(`${l}\n`),
    });
  } finally {
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
