import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const TEST_DATA = path.join(ROOT, '.data', 'test');
export const TEST_PG_PORT = Number(process.env.TEST_PG_PORT ?? 55433);
export const TEST_PG_DIR = path.join(TEST_DATA, 'pg');
/** The cluster's superuser: the schema owner, for setup and for tests that damage data on purpose. */
export const adminUrl = (db = 'postgres') => `postgres://postgres@127.0.0.1:${TEST_PG_PORT}/${db}`;
/** The service's least-privileged role (migration 014): what the code under test connects as. */
export const appUrl = (db: string) => `postgres://creditflow_app@127.0.0.1:${TEST_PG_PORT}/${db}`;
export const TEMPLATE_DB = 'creditflow_template';
