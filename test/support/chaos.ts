import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { Pool } from '../../db/pool';
import type { TestApi } from './api';
import { freshDatabase, type TestDatabase } from './db';
import { killAllWorkers, spawnWorker, startInProcessWorker, type WorkerProcess } from './workers';
import { quietRuntime } from './quiet-runtime';

export interface ChaosContext {
  db: TestDatabase;
  pool: Pool;
  address: string;
  native: NativeConnection;
  client: Client;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The promise's value, or null after `ms` (the timer does not outlive the wait). */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The frame of a kill-test file: a database and Temporal connections; scenarios that all start at
 * once in beforeAll (after `ready`) and that each test awaits — they mostly wait on timeouts, and
 * Jest would run them a few at a time; worker processes that SIGKILL themselves at a crash point,
 * at most `startups` bundling their workflows at a time (CPU-bound seconds); in-process recovery
 * workers; and the teardown of all of it. Call once, at the top level of the test file.
 * CHAOS_ONLY=<substring> starts only the matching scenarios (Jest's -t would still start them all).
 */
export function chaosSuite(o: { startups: number; ready?: (c: ChaosContext) => Promise<void> }) {
  let ctx!: ChaosContext;
  let connection: Connection | undefined;
  const scenarios: { name: string; run: () => Promise<void> }[] = [];
  const running = new Map<string, Promise<void>>();
  const apis: TestApi[] = [];
  const stops: (() => Promise<void>)[] = [];
  const only = process.env.CHAOS_ONLY;

  beforeAll(async () => {
    quietRuntime();
    const db = await freshDatabase();
    const address = process.env.TEST_TEMPORAL_ADDRESS!;
    const native = await NativeConnection.connect({ address });
    connection = await Connection.connect({ address });
    ctx = { db, pool: db.pool, address, native, client: new Client({ connection }) };
    await o.ready?.(ctx);
    for (const sc of scenarios) {
      const p = sc.run();
      p.catch(() => undefined); // reported by its test
      running.set(sc.name, p);
    }
  });
  afterAll(async () => {
    await within(Promise.allSettled(running.values()), 60_000);
    await killAllWorkers();
    for (const stop of stops) await stop().catch(() => undefined);
    for (const a of apis) await a.close();
    await connection?.close();
    await ctx?.native.close();
    await ctx?.db.drop();
  });

  let slots = o.startups;
  const waiting: (() => void)[] = [];
  async function limited<T>(fn: () => Promise<T>): Promise<T> {
    if (slots === 0) await new Promise<void>((r) => waiting.push(r));
    else slots--;
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else slots++;
    }
  }

  return {
    scenario: (name: string, run: () => Promise<void>, timeoutMs: number): void => {
      if (only && !name.includes(only)) return it.skip(name, () => undefined);
      scenarios.push({ name, run });
      it(name, () => running.get(name)!, timeoutMs);
    },
    /** Runs `fn` in one of the `startups` slots (anything CPU-bound at start: a worker, a server). */
    limited,
    /** Closed at the end. */
    track: (api: TestApi): TestApi => {
      apis.push(api);
      return api;
    },
    /** An in-process worker on the run's pre-built bundle (stopped at the end). */
    recoveryWorker: async (taskQueue: string) => {
      const w = await startInProcessWorker({
        connection: ctx.native,
        client: ctx.client,
        taskQueue,
        pool: ctx.pool,
      });
      stops.push(w.stop);
      return w;
    },
    /** A real worker process, once it polls (`crash`: `<activity>:before|after`, where it SIGKILLs itself). */
    workerProcess: (taskQueue: string, crash?: string): Promise<WorkerProcess> =>
      limited(async () => {
        const w = spawnWorker({ databaseUrl: ctx.db.url, temporalAddress: ctx.address, taskQueue, crash });
        await w.ready;
        return w;
      }),
    /** The worker died of its own SIGKILL within `ms`; otherwise the error shows its stderr. */
    expectKilled: async (w: WorkerProcess, ms = 60_000): Promise<void> => {
      const died = await within(w.exited, ms);
      if (!died) throw new Error(`the worker did not hit its crash point: ${w.stderr()}`);
      expect(died).toEqual({ code: null, signal: 'SIGKILL' });
    },
  };
}
