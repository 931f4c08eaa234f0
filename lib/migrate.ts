import { existsSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import { provisionServiceRole } from './db-roles';

export const MIGRATIONS_DIR = path.resolve(__dirname, '..', '..', 'migrations');

function migrationsDir(): string {
  // Compiled code runs from dist/lib, sources from lib/ (tests): find the folder either way.
  const candidates = [path.resolve(__dirname, '..', 'migrations'), MIGRATIONS_DIR];
  return candidates.find((d) => existsSync(d)) ?? MIGRATIONS_DIR;
}

export interface MigrateLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/**
 * As the owner (databaseUrl): creates the database when it does not exist (local clusters), applies
 * pending migrations, then sets up serviceUrl's user as the service's least-privileged login role.
 */
export async function migrate(
  databaseUrl: string,
  opts: { createDatabase?: boolean; logger?: MigrateLogger; serviceUrl?: string } = {},
): Promise<void> {
  if (opts.createDatabase) await createDatabaseIfMissing(databaseUrl);
  const noop = () => undefined;
  const l = opts.logger;
  await runner({
    databaseUrl,
    dir: migrationsDir(),
    direction: 'up',
    migrationsTable: 'pgmigrations',
    count: Infinity,
    checkOrder: true,
    logger: {
      debug: noop,
      info: (m: string) => l?.info(m),
      warn: (m: string) => l?.warn(m),
      error: (m: string) => (l ? l.error(m) : console.error(m)),
    },
  });
  if (opts.serviceUrl) await provisionServiceRole(databaseUrl, opts.serviceUrl);
}

export async function createDatabaseIfMissing(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.slice(1));
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount === 0) await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
}
