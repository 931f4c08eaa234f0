import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { createDatabaseIfMissing, migrate } from '../lib/migrate';
import { startTemporalDevServer } from '../lib/temporal-dev-server';

// Apart from bench/lib.ts, which tests import too: node-pg-migrate is ESM, which Jest cannot load.

const BENCH_ROOT = path.resolve(__dirname, '..', '..');
const BENCH_DATA = path.join(BENCH_ROOT, '.data', 'bench');

/**
 * A new, migrated database `bench_<name>_<time>` on the bench's own Postgres cluster
 * (`.data/bench/<cluster>`, started if it is not running); returns its URL.
 */
export async function benchDatabase(name: string, cluster: string, port: number): Promise<string> {
  mkdirSync(BENCH_DATA, { recursive: true });
  execFileSync(
    'bash',
    [path.join(BENCH_ROOT, 'scripts/pg.sh'), 'start', path.join(BENCH_DATA, cluster), String(port)],
    {
      stdio: 'inherit',
    },
  );
  const url = `postgres://postgres@127.0.0.1:${port}/bench_${name}_${Date.now()}`;
  await createDatabaseIfMissing(url);
  await migrate(url);
  return url;
}

/** A Temporal dev server for a bench (the project's CLI in .tools when present), its log under .data/bench. */
export function benchTemporal(port: number, logName: string) {
  const local = path.join(BENCH_ROOT, '.tools', 'bin', 'temporal');
  return startTemporalDevServer({
    bin: process.env.TEMPORAL_BIN || (existsSync(local) ? local : undefined),
    port,
    fast: true,
    logFile: path.join(BENCH_DATA, logName),
  });
}
