import { proxyActivities, proxyLocalActivities } from '@temporalio/workflow';

/** The benchmark reference: a bare workflow with one no-op local activity, like the subject's steps. */
const local = proxyLocalActivities<{ noop(): Promise<void> }>({ startToCloseTimeout: '10 seconds' });

export async function referenceWorkflow(): Promise<void> {
  await local.noop();
}

/** The reference before issue 16 (one side-by-side run only): the no-op as a normal activity. */
const remote = proxyActivities<{ noop(): Promise<void> }>({ startToCloseTimeout: '10 seconds' });

export async function oldReferenceWorkflow(): Promise<void> {
  await remote.noop();
}
