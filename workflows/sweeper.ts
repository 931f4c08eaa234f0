import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

// Bounded: the next scheduled run (every 5 minutes) tries again.
const { sweepStrandedHolds } = proxyActivities<Activities>({
  startToCloseTimeout: '4 minutes',
  scheduleToCloseTimeout: '4 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/**
 * No stranded credits: releases holds past their TTL whose reservation workflow no longer runs
 * (terminated from the UI, failed for good). Started by a Temporal Schedule.
 */
export async function holdSweeper(o: { graceSeconds?: number } = {}) {
  return sweepStrandedHolds({ graceSeconds: o.graceSeconds ?? 60 });
}
