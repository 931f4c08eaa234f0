import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { migrate } from '../../lib/migrate';
import { startTemporalDevServer, type DevServer } from '../../lib/temporal-dev-server';
import { freePort } from './ports';
import { adminUrl, appUrl, ROOT, TEMPLATE_DB, TEST_DATA, TEST_PG_DIR, TEST_PG_PORT } from './paths';

const noop = () => undefined;
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };

/** scripts/tools.sh installs the CLI into .tools/bin; fall back to PATH, then to the SDK download. */
function temporalBin(): string | undefined {
  if (process.env.TEMPORAL_BIN) return process.env.TEMPORAL_BIN;
  const local = path.join(ROOT, '.tools', 'bin', 'temporal');
  if (existsSync(local)) return local;
  try {
    return execFileSync('bash', ['-c', 'command -v temporal'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Real services for the whole run: one Postgres cluster (a template DB per run) and one Temporal dev server. */
export default async function globalSetup(): Promise<void> {
  mkdirSync(TEST_DATA, { recursive: true });
  execFileSync('bash', [path.join(ROOT, 'scripts/pg.sh'), 'start', TEST_PG_DIR, String(TEST_PG_PORT)], {
    stdio: 'inherit',
    env: { ...process.env, PG_FSYNC: 'off', PG_SYNC_COMMIT: 'off' },
  });
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  // Leftover per-file databases from an interrupted run.
  const stale = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'`);
  for (const { datname } of stale.rows) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DB} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${TEMPLATE_DB}`);
  await admin.end();
  await migrate(adminUrl(TEMPLATE_DB), { serviceUrl: appUrl(TEMPLATE_DB) });

  // Compiled code for tests that run real processes (npm start, crash tests): built once, up front.
  execFileSync('npx', ['--no-install', 'tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  // The portal page's script (browser code, its own tsconfig), served from dist/portal.
  execFileSync('npx', ['--no-install', 'tsc', '-p', 'portal/tsconfig.json'], { cwd: ROOT, stdio: 'inherit' });

  // Bundle the workflows once per run (bundling per test costs seconds each).
  const { bundleWorkflowCode } = await import('@temporalio/worker');
  const { code } = await bundleWorkflowCode({
    workflowsPath: path.join(ROOT, 'workflows', 'index.ts'),
    logger: quietLogger,
  });
  const bundlePath = path.join(TEST_DATA, 'workflow-bundle.js');
  writeFileSync(bundlePath, code);
  process.env.TEST_WORKFLOW_BUNDLE = bundlePath;

  if (!process.env.TEST_TEMPORAL_ADDRESS) {
    const server: DevServer = await startTemporalDevServer({
      bin: temporalBin(),
      port: await freePort(),
      fast: true,
      logFile: path.join(TEST_DATA, 'temporal.log'),
    });
    (globalThis as { __temporal?: DevServer }).__temporal = server;
    process.env.TEST_TEMPORAL_ADDRESS = server.address;
  }
}
