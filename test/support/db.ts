import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createPool, type Pool } from '../../db/pool';
import { adminUrl, TEMPLATE_DB } from './paths';

/** A fresh, migrated database for one test file (CREATE DATABASE … TEMPLATE is milliseconds). */
export async function freshDatabase(): Promise<{ pool: Pool; url: string; drop: () => Promise<void> }> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE_DB}`);
  await admin.end();
  const url = adminUrl(name);
  const pool = createPool(url, 60);
  return {
    pool,
    url,
    drop: async () => {
      await pool.end();
      const a = new pg.Client({ connectionString: adminUrl() });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}
