import { proxyActivities } from '@temporalio/workflow';

/** The benchmark reference: a bare workflow with one no-op activity. */
const { noop } = proxyActivities<{ noop(): Promise<void> }>({ startToCloseTimeout: '10 seconds' });

export async function referenceWorkflow(): Promise<void> {
  await noop();
}
