import { randomUUID } from 'node:crypto';
import { Client, Connection, type ScheduleHandle } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { HoldsClient } from '../../client/holds';
import type { Pool } from '../../db/pool';
import { createWorker } from '../../worker/worker';
import { PaymentsClient } from '../../client/payments';
import { TopUpTrigger } from '../../client/topups';
import { SandboxGateway } from '../../payments/sandbox';
import { quietRuntime } from './quiet-runtime';

/** A worker on a unique task queue against the run's Temporal dev server, plus clients. */
export async function temporalHarness(pool: Pool) {
  quietRuntime();
  const address = process.env.TEST_TEMPORAL_ADDRESS!;
  const taskQueue = `test-${randomUUID()}`;
  const nativeConnection = await NativeConnection.connect({ address });
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const gateway = new SandboxGateway(pool);
  const topUps = new TopUpTrigger(pool, () => Promise.resolve(client), taskQueue);
  const startWorker = (): Promise<Worker> =>
    createWorker({
      connection: nativeConnection,
      namespace: 'default',
      taskQueue,
      pool,
      workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
      temporal: () => Promise.resolve(client),
      gateway,
      topUps,
    });
  return {
    address,
    taskQueue,
    client,
    // Generous bound: these tests check outcomes under load, not latency (the API's bound is 10 s).
    holds: new HoldsClient(client, taskQueue, { timeoutMs: 30_000 }),
    payments: new PaymentsClient(client, taskQueue),
    gateway,
    topUps,
    startWorker,
    close: async () => {
      await connection.close();
      await nativeConnection.close();
    },
  };
}

/** Triggers a schedule now; the id of the workflow it started (Temporal appends the time to the schedule's id). */
export async function triggerSchedule(handle: ScheduleHandle): Promise<string> {
  await handle.trigger();
  for (let i = 0; i < 50; i++) {
    const workflowId = (await handle.describe()).info.recentActions[0]?.action.workflow.workflowId;
    if (workflowId) return workflowId;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`schedule ${handle.scheduleId} started no workflow`);
}
