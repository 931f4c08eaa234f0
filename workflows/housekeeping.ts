import { continueAsNew, defineQuery, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';

// Heartbeats between batches: a lost worker is noticed in 20 s; bounded retries, then the
// workflow fails visibly and the next scheduled run starts over (deleting is idempotent).
const { purgeIdempotencyRecords } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '20 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', maximumAttempts: 10 },
});

export interface HousekeepingInput {
  /** IDEMPOTENCY_RETENTION_DAYS (≥ 7; the SQL refuses anything younger than 7 days anyway). */
  retentionDays: number;
  /** Rows per DELETE statement. */
  batchSize?: number;
  /** DELETE statements per activity. */
  batchesPerActivity?: number;
  /** Activities per workflow run before continue-as-new (the history stays small). */
  activitiesPerRun?: number;
  /** Carried over continue-as-new: fixed when the chain started, so the loop has an end. */
  cutoff?: string;
  purged?: number;
}

export interface HousekeepingStatus {
  phase: 'purging' | 'done';
  cutoff: string;
  purged: number;
  activities: number;
}

export const housekeepingStatusQuery = defineQuery<HousekeepingStatus>('status');

const DAY_MS = 86_400_000;

/**
 * Purges stored HTTP replies (Idempotency-Key) older than the retention, batch after batch, until
 * a batch comes back short. Never the ledger's idempotency keys (see README "Housekeeping").
 */
export async function housekeeping(input: HousekeepingInput): Promise<{ purged: number; cutoff: string }> {
  const cutoff =
    input.cutoff ?? new Date(workflowInfo().startTime.getTime() - input.retentionDays * DAY_MS).toISOString();
  const batchSize = input.batchSize ?? 2000;
  const batchesPerActivity = input.batchesPerActivity ?? 10;
  const activitiesPerRun = input.activitiesPerRun ?? 100;
  const status: HousekeepingStatus = { phase: 'purging', cutoff, purged: input.purged ?? 0, activities: 0 };
  setHandler(housekeepingStatusQuery, () => status);
  while (status.activities < activitiesPerRun) {
    const r = await purgeIdempotencyRecords({ cutoff, batchSize, batches: batchesPerActivity });
    status.purged += r.purged;
    status.activities++;
    if (r.done) {
      status.phase = 'done';
      return { purged: status.purged, cutoff };
    }
  }
  return continueAsNew<typeof housekeeping>({
    ...input,
    cutoff,
    batchSize,
    batchesPerActivity,
    activitiesPerRun,
    purged: status.purged,
  });
}
