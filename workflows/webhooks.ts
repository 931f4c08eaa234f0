import { continueAsNew, defineQuery, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';

export interface WebhookDeliveryInput {
  endpointId: string;
  /** How long one run of the delivery loop lasts (default 5 minutes). */
  runForMs?: number;
}

export interface WebhookDeliveryStatus {
  endpointId: string;
  /** Delivery-loop runs finished in this workflow run, and what they did. */
  runs: number;
  attempts: number;
  delivered: number;
  /** Why the last loop run stopped (`elapsed`: its time was up; it starts again). */
  lastStopped: string | null;
}
export const webhookStatusQuery = defineQuery<WebhookDeliveryStatus>('status');

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
  const status: WebhookDeliveryStatus = {
    endpointId: input.endpointId,
    runs: 0,
    attempts: 0,
    delivered: 0,
    lastStopped: null,
  };
  setHandler(webhookStatusQuery, () => status);
  for (let run = 0; run < RUNS_PER_HISTORY && !workflowInfo().continueAsNewSuggested; run++) {
    const r = await runWebhookEndpoint({ endpointId: input.endpointId, runForMs: input.runForMs ?? 5 * 60_000 });
    status.runs++;
    status.attempts += r.attempts;
    status.delivered += r.delivered;
    status.lastStopped = r.stopped;
    if (r.stopped === 'deleted') return { stopped: 'deleted' };
  }
  return continueAsNew<typeof webhookDelivery>(input);
}

/** The safety net, on a Temporal Schedule: every live endpoint has its delivery workflow running. */
export async function webhookKeeper(): Promise<{ started: number }> {
  return ensureWebhookWorkflows({});
}
