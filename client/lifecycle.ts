import type { Client } from '@temporalio/client';
import { creditLifecycle, lifecycleWorkflowId, lotsChangedSignal, type LifecycleInput } from '../workflows/lifecycle';
import { CustomerIdKey } from './holds';

/**
 * Starts the customer's lifecycle workflow or tells the running one that its lots changed
 * (signal-with-start: one call, no race between "is it running?" and "start it").
 */
export async function notifyLifecycle(
  client: Client,
  taskQueue: string,
  input: LifecycleInput,
  opts: { searchAttributes?: boolean; timeoutMs?: number } = {},
): Promise<string> {
  const workflowId = lifecycleWorkflowId(input.customerId);
  // Bounded: a grant must not wait on Temporal being away (the sweeper nudges missed lifecycles).
  await client.withDeadline(Date.now() + (opts.timeoutMs ?? 3000), () =>
    client.workflow.signalWithStart(creditLifecycle, {
      workflowId,
      taskQueue,
      args: [input],
      signal: lotsChangedSignal,
      ...(opts.searchAttributes === false
        ? {}
        : { typedSearchAttributes: [{ key: CustomerIdKey, value: input.customerId }] }),
    }),
  );
  return workflowId;
}
