import { loadConfig } from '../lib/config';
import { createLogger } from '../lib/logger';
import { migrate } from '../lib/migrate';

/** Applies pending migrations; with --create-database also creates the database (local clusters). */
const config = loadConfig();
const log = createLogger('creditflow-migrate', config.LOG_LEVEL);
migrate(config.DATABASE_URL, {
  createDatabase: process.argv.includes('--create-database'),
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
