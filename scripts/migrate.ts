import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { migrate } from '../lib/migrate';

/**
 * Applies pending migrations as the owner (DATABASE_OWNER_URL) and sets up DATABASE_URL's user as the
 * service's least-privileged role; with --create-database also creates the database (local clusters).
 * Without DATABASE_OWNER_URL, migrations run over DATABASE_URL, which then is the owner.
 */
const config = loadConfig();
const log = createLogger('creditflow-migrate', config.LOG_LEVEL);
if (!config.DATABASE_OWNER_URL)
  log.warn('DATABASE_OWNER_URL is not set: the service connects as the schema owner (no least privilege)');
migrate(config.DATABASE_OWNER_URL ?? config.DATABASE_URL, {
  createDatabase: process.argv.includes('--create-database'),
  serviceUrl: config.DATABASE_OWNER_URL ? config.DATABASE_URL : undefined,
  logger: { info: (m) => log.info(m.trim()), warn: (m) => log.warn(m.trim()), error: (m) => log.error(m.trim()) },
}).then(
  () => {
    log.info('migrations up to date');
    process.exit(0);
  },
  (err: unknown) => {
    log.fatal({ err: String(err) }, 'migration failed');
    process.exit(1);
  },
);
