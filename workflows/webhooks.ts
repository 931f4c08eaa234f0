import { continueAsNew, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';

export interface WebhookDeliveryInput {
  endpointId: string;
  /** How long one run of the delivery loop lasts (default 5 minutes). */
  runForMs?: number;
}

export const webhookWorkflowId = (endpointId: string) => `webhooks:${endpointId}`;

// The loop heartbeats at least every second: a worker that dies is noticed within 30 s and the
// loop restarts on another worker. Any failure is retried (the loop's state is all in Postgres).
const { runWebhookEndpoint } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

const { ensureWebhookWorkflows } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 5 },
});

/** Runs before continuing as new: the history stays bounded (about 6 events per run). */
const RUNS_PER_HISTORY = 100;

/**
 * One per webhook endpoint (`webhooks:<endpointId>`): runs the endpoint's delivery loop as a
 * long-running activity, again and again, until the endpoint is deleted.
 */
export async function webhookDelivery(input: WebhookDeliveryInput): Promise<{ stopped: 'deleted' }> {
  for (let run = 0; run < RUNS_PER_HISTORY && !workflowInfo().continueAsNewSuggested; run++) {
    const r = await runWebhookEndpoint({ endpointId: input.endpointId, runForMs: input.runForMs ?? 5 * 60_000 });
    if (r.stopped === 'deleted') return { stopped: 'deleted' };
  }
  return continueAsNew<typeof webhookDelivery>(input);
}

/** The safety net, on a Temporal Schedule: every live endpoint has its delivery workflow running. */
export async function webhookKeeper(): Promise<{ started: number }> {
  return ensureWebhookWorkflows({});
}
