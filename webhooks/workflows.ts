import { ScheduleAlreadyRunning, type Client } from '@temporalio/client';
import { webhookDelivery, webhookKeeper, webhookWorkflowId } from '../workflows/webhooks';

export const WEBHOOK_KEEPER_SCHEDULE_ID = 'creditflow-webhook-keeper';

/** Starts the endpoint's delivery workflow unless it runs already (idempotent, bounded). */
export async function startWebhookDelivery(
  client: Client,
  taskQueue: string,
  endpointId: string,
  timeoutMs = 3000,
): Promise<void> {
  await client.withDeadline(Date.now() + timeoutMs, () =>
    client.workflow.start(webhookDelivery, {
      workflowId: webhookWorkflowId(endpointId),
      taskQueue,
      args: [{ endpointId }],
      workflowIdConflictPolicy: 'USE_EXISTING',
    }),
  );
}

/** The keeper schedule (every minute): restarts delivery workflows that are missing. Created once. */
export async function ensureWebhookSchedule(client: Client, taskQueue: string, everySeconds = 60): Promise<void> {
  try {
    await client.schedule.create({
      scheduleId: WEBHOOK_KEEPER_SCHEDULE_ID,
      spec: { intervals: [{ every: `${everySeconds}s` }] },
      action: { type: 'startWorkflow', workflowType: webhookKeeper, taskQueue, workflowId: 'webhook-keeper' },
      policies: { overlap: 'SKIP' },
    });
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
}
