import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';

const { databaseTime } = proxyActivities<Activities>({ startToCloseTimeout: '10 seconds' });

export interface ConnectivityResult {
  workflowId: string;
  databaseTime: string;
}

/** Placeholder until the first real workflows: worker ↔ Temporal ↔ activity ↔ Postgres round trip. */
export async function connectivityCheck(): Promise<ConnectivityResult> {
  return { workflowId: workflowInfo().workflowId, databaseTime: await databaseTime() };
}
