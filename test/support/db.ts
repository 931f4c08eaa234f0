import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createPool, type Pool } from '../../db/pool';
import { adminUrl, appUrl, TEMPLATE_DB } from './paths';

export interface TestDatabase {
  /** The service's role (creditflow_app): hand this to API, worker and ledger code. */
  pool: Pool;
  url: string;
  /** The schema owner: only for setup the service could not do, and for damage done on purpose. */
  owner: Pool;
  ownerUrl: string;
  drop: () => Promise<void>;
}

/** A fresh, migrated database for one test file (CREATE DATABASE … TEMPLATE is milliseconds). */
export async function freshDatabase(): Promise<TestDatabase> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE_DB}`);
  await admin.end();
  const url = appUrl(name);
  const ownerUrl = adminUrl(name);
  const pool = createPool(url, 60);
  const owner = createPool(ownerUrl, 5);
  return {
    pool,
    url,
    owner,
    ownerUrl,
    drop: async () => {
      await Promise.all([pool.end(), owner.end()]);
      const a = new pg.Client({ connectionString: adminUrl() });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}
