import type { AppDeps } from '../../api/app';
import type { Pool } from '../../db/pool';
import { startApi } from './api';
import { freshDatabase } from './db';
import { temporalHarness } from './temporal';

export type Harness = Awaited<ReturnType<typeof temporalHarness>>;
export type Stack = Awaited<ReturnType<typeof startStack>>;

/**
 * A test file's whole stack: its own database, the Temporal harness with an in-process worker
 * running, and the API over that database (`apiDeps` wires the API to the harness).
 */
export async function startStack(apiDeps: (t: Harness, pool: Pool) => Partial<AppDeps> = () => ({})) {
  const db = await freshDatabase();
  const t = await temporalHarness(db.pool);
  const worker = await t.startWorker();
  const running = worker.run();
  const api = await startApi(db.pool, apiDeps(t, db.pool));
  return {
    db,
    pool: db.pool,
    t,
    api,
    async close() {
      await api.close();
      worker.shutdown();
      await running;
      await t.close();
      await db.drop();
    },
  };
}
