import type { Pool } from '../db/pool';

export interface ActivityDeps {
  pool: Pool;
  clock?: () => Date;
}

/**
 * Activities come from a factory taking their dependencies; only the worker wires them.
 * Every activity that moves credits goes through the ledger core with a key derived from
 * workflow id + step (arrives with the hold, lifecycle and top-up issues).
 */
export function createActivities(deps: ActivityDeps) {
  return {
    /** Connectivity check: proves the worker reaches Postgres. */
    async databaseTime(): Promise<string> {
      const r = await deps.pool.query<{ now: Date }>('SELECT now() AS now');
      return r.rows[0]!.now.toISOString();
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
