import { randomUUID } from 'node:crypto';
import type { Pool } from '../../db/pool';
import { connectivityCheck } from '../../workflows';
import { freshDatabase } from '../support/db';
import { temporalHarness } from '../support/temporal';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
});
afterAll(async () => db.drop());

describe('worker on a real Temporal dev server', () => {
  it('registers the workflows and activities and completes a round trip through Postgres', async () => {
    const t = await temporalHarness(pool);
    const worker = await t.startWorker();
    try {
      const workflowId = `connectivity:${randomUUID()}`;
      const result = await worker.runUntil(
        t.client.workflow.execute(connectivityCheck, {
          taskQueue: t.taskQueue,
          workflowId,
          workflowExecutionTimeout: '30s',
        }),
      );
      expect(result.workflowId).toBe(workflowId);
      expect(Number.isNaN(Date.parse(result.databaseTime))).toBe(false);
    } finally {
      await t.close();
    }
  });
});
