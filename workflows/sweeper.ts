import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

const { sweepStrandedHolds } = proxyActivities<Activities>({ startToCloseTimeout: '5 minutes' });

/**
 * No stranded credits: releases holds past their TTL whose reservation workflow no longer runs
 * (terminated from the UI, failed for good). Started by a Temporal Schedule.
 */
export async function holdSweeper(o: { graceSeconds?: number } = {}) {
  return sweepStrandedHolds({ graceSeconds: o.graceSeconds ?? 60 });
}
