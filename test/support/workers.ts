import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { NativeConnection } from '@temporalio/worker';
import type { Pool } from '../../db/pool';
import { createWorker } from '../../worker/worker';
import { TopUpTrigger } from '../../client/topups';
import { SandboxGateway } from '../../payments/sandbox';
import { ROOT } from './paths';

export interface WorkerProcess {
  proc: ChildProcess;
  /** Resolves once the worker logged that it runs (its workflows are bundled, it polls). */
  ready: Promise<void>;
  /** How the process ended: an exit code, or the signal that killed it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last lines of its stderr, for failure messages. */
  stderr: () => string;
}

const live = new Set<ChildProcess>();

/**
 * One of the project's processes (`dist/<script>`) with `env` added, ready once its stdout shows
 * `"msg":"<readyMessage>"`; its output's tail goes into failure messages. killAllWorkers ends it.
 */
export function spawnProcess(script: string, env: Record<string, string>, readyMessage: string): WorkerProcess {
  const proc = spawn(process.execPath, [path.join(ROOT, 'dist', script)], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  let err = '';
  const grab = (d: Buffer) => {
    err = (err + d.toString()).slice(-6000);
  };
  proc.stderr.on('data', grab);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => {
      live.delete(proc);
      resolve({ code, signal });
    }),
  );
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      grab(d);
      out = (out + d.toString()).slice(-8000);
      if (out.includes(`"msg":"${readyMessage}"`)) resolve();
    });
    void exited.then((e) => reject(new Error(`${script} exited before it ran (${JSON.stringify(e)}): ${err}`)));
  });
  ready.catch(() => undefined);
  return { proc, ready, exited, stderr: () => err };
}

/**
 * The real worker process (dist/worker/main.js) on one task queue. `crash` is the fault-injection
 * point (CREDITFLOW_TEST_CRASH=<activity>:before|after), where the process SIGKILLs itself.
 */
export function spawnWorker(o: {
  databaseUrl: string;
  temporalAddress: string;
  taskQueue: string;
  crash?: string;
  /** More environment (e.g. WORKER_METRICS_ADDRESS, off by default: workers would share a port). */
  env?: Record<string, string>;
}): WorkerProcess {
  return spawnProcess(
    'worker/main.js',
    {
      DATABASE_URL: o.databaseUrl,
      DATABASE_POOL_SIZE: '5',
      TEMPORAL_ADDRESS: o.temporalAddress,
      TEMPORAL_TASK_QUEUE: o.taskQueue,
      LOG_LEVEL: 'info', // the "worker running" line is the readiness signal
      CREDITFLOW_TEST_CRASH: o.crash ?? '',
      CREDITFLOW_TEST_CRASH_AFTER_COMMIT: '',
      PAYMENT_GATEWAY: 'sandbox',
      WORKER_METRICS_ADDRESS: 'off',
      ...o.env,
    },
    'worker running',
  );
}

/** SIGKILLs every process spawnProcess started that is still alive (afterAll). */
export async function killAllWorkers(): Promise<void> {
  const all = [...live];
  for (const p of all) p.kill('SIGKILL');
  await Promise.all(all.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)))));
}

/** A normal worker inside the test process (the run's pre-built bundle: no bundling per worker). */
export async function startInProcessWorker(o: {
  connection: NativeConnection;
  client: Client;
  taskQueue: string;
  pool: Pool;
}): Promise<{ stop: () => Promise<void> }> {
  const worker = await createWorker({
    connection: o.connection,
    namespace: 'default',
    taskQueue: o.taskQueue,
    pool: o.pool,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    temporal: () => Promise.resolve(o.client),
    gateway: new SandboxGateway(o.pool),
    topUps: new TopUpTrigger(o.pool, () => Promise.resolve(o.client), o.taskQueue),
  });
  const running = worker.run();
  return {
    stop: async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
    },
  };
}
