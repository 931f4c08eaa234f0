import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { migrate } from '../../lib/migrate';
import { adminUrl, appUrl, ROOT, TEMPLATE_DB, TEST_PG_PORT } from './paths';

/**
 * Jest global setup for `npm run mutation` (stryker.config.mjs), in place of global-setup.ts.
 * Stryker runs Jest in-process once per mutant and Jest runs the global setup every time, so this
 * does only what the unit and ledger tests need (Postgres and a migrated template database; no
 * build, bundle or Temporal server), once per Stryker worker process.
 */

// Stryker runs the tests in a copy of the project under .stryker-tmp/; the cluster stays in the real one.
const PROJECT = ROOT.split(`${path.sep}.stryker-tmp${path.sep}`)[0]!;
const PG_DIR = path.join(PROJECT, '.data', 'test', 'pg');
const DONE = 'CREDITFLOW_MUTATION_SETUP_DONE';
const LOCK = 7_316_001; // any constant: the workers set up one at a time

function migrationsHash(): string {
  const dir = path.join(ROOT, 'migrations');
  const h = createHash('sha256');
  for (const f of readdirSync(dir).sort()) h.update(f).update(readFileSync(path.join(dir, f)));
  return h.digest('hex');
}

export default async function mutationSetup(): Promise<void> {
  if (process.env[DONE]) return;
  mkdirSync(PG_DIR, { recursive: true });
  execFileSync('bash', [path.join(PROJECT, 'scripts', 'pg.sh'), 'start', PG_DIR, String(TEST_PG_PORT)], {
    stdio: 'inherit',
    env: { ...process.env, PG_FSYNC: 'off', PG_SYNC_COMMIT: 'off' },
  });
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  try {
    await admin.query('SELECT pg_advisory_lock($1)', [LOCK]);
    // The workers share the template: one already migrated from these migrations (its comment says
    // which) is kept, since rebuilding it would break another worker's CREATE DATABASE … TEMPLATE.
    const want = migrationsHash();
    const found = await admin.query<{ marker: string | null }>(
      `SELECT shobj_description(oid, 'pg_database') AS marker FROM pg_database WHERE datname = $1`,
      [TEMPLATE_DB],
    );
    if (found.rows[0]?.marker !== want) {
      await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DB} WITH (FORCE)`);
      await admin.query(`CREATE DATABASE ${TEMPLATE_DB}`);
      await migrate(adminUrl(TEMPLATE_DB), { serviceUrl: appUrl(TEMPLATE_DB) });
      await admin.query(`COMMENT ON DATABASE ${TEMPLATE_DB} IS '${want}'`);
    }
  } finally {
    await admin.end(); // ends the session, and with it the advisory lock
  }
  process.env[DONE] = '1';
}
