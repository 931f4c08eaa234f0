import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker';
import { randomUUID } from 'node:crypto';
import type { Pool } from '../../db/pool';
import { connectivityCheck } from '../../workflows';
import { createWorker, workflowsPath } from '../../worker/worker';
import { freshDatabase } from '../support/db';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;

beforeAll(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  db = await freshDatabase();
  pool = db.pool;
});
afterAll(async () => db.drop());

describe('worker on a real Temporal dev server', () => {
  it('registers the workflows and activities and completes a round trip through Postgres', async () => {
    const address = process.env.TEST_TEMPORAL_ADDRESS!;
    const taskQueue = `test-${randomUUID()}`;
    const nativeConnection = await NativeConnection.connect({ address });
    const workflowBundle = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger('WARN') });
    const worker = await createWorker({
      connection: nativeConnection,
      namespace: 'default',
      taskQueue,
      pool,
      workflowBundle,
    });
    const connection = await Connection.connect({ address });
    const client = new Client({ connection });
    try {
      const workflowId = `connectivity:${randomUUID()}`;
      const result = await worker.runUntil(
        client.workflow.execute(connectivityCheck, { taskQueue, workflowId, workflowExecutionTimeout: '30s' }),
      );
      expect(result.workflowId).toBe(workflowId);
      expect(Number.isNaN(Date.parse(result.databaseTime))).toBe(false);
    } finally {
      await connection.close();
      await nativeConnection.close();
    }
  });
});
