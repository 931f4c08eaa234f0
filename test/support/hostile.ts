import type { AppDeps } from '../../api/app';
import { createPool } from '../../db/pool';
import { makeKey, startApi, type Call } from './api';
import { freshDatabase } from './db';

/** The API's own pool in hostile tests: small, so a burst of 3× it really queues. */
export const API_POOL = 4;

/**
 * A fresh database and the API over a pool of API_POOL connections, with a key per role: `viewer`
 * of cust-a and `otherCustomer`, support scoped to cust-b (the customers are the caller's to make).
 */
export async function startHostileApi(deps: Partial<AppDeps>) {
  const db = await freshDatabase();
  // A long connect timeout: on a loaded machine a queued request must wait its turn, not give a 503.
  const apiPool = createPool(db.url, API_POOL, 30_000);
  const api = await startApi(apiPool, deps);
  const keys = {
    admin: await makeKey(db.pool, 'admin'),
    support: await makeKey(db.pool, 'support'),
    service: await makeKey(db.pool, 'service'),
    viewer: await makeKey(db.pool, 'viewer', 'cust-a'),
    otherCustomer: await makeKey(db.pool, 'support', 'cust-b'),
  };
  return {
    db,
    pool: db.pool,
    apiPool,
    api,
    keys,
    async close() {
      await api.close();
      await apiPool.end();
      await db.drop();
    },
  };
}
export type HostileKeys = Awaited<ReturnType<typeof startHostileApi>>['keys'];

/** A problem+json answer of `status`; `field`: its first validation error's path; `code`: its code. */
export function expectProblem(r: Call, c: { status: number; field?: string; code?: string }) {
  expect({ status: r.status, body: r.body }).toMatchObject({ status: c.status, body: { status: c.status } });
  expect(typeof r.body.status).toBe('number');
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  if (c.field) expect(r.body.errors?.[0]).toEqual({ path: c.field, message: expect.any(String) });
  if (c.code) expect(r.body.code).toBe(c.code);
}

/** A test name's rendering of a bad value. */
export const show = (v: unknown) => (v === undefined ? 'missing' : JSON.stringify(v));
