import { ScheduleAlreadyRunning, type Client, type ScheduleOptionsAction } from '@temporalio/client';
import { loadConfig } from '../lib/config';
import { holdSweeper } from '../workflows/sweeper';
import { reconcile } from '../workflows/reconcile';
import { housekeeping, type HousekeepingInput } from '../workflows/housekeeping';

export const SWEEPER_SCHEDULE_ID = 'creditflow-hold-sweeper';
export const RECONCILIATION_SCHEDULE_ID = 'creditflow-reconciliation';
export const HOUSEKEEPING_SCHEDULE_ID = 'creditflow-housekeeping';

export interface ScheduleOptions {
  /** Default: RECONCILIATION_CRON. */
  reconciliationCron?: string;
  /** Default: RECONCILIATION_SCHEDULE_ID (tests use their own). */
  reconciliationScheduleId?: string;
}

/**
 * The worker's Temporal Schedules (visible in the Web UI), created at start: the stranded-hold
 * sweeper once; reconciliation and housekeeping upserted, so a changed cron takes effect.
 */
export async function ensureSchedules(
  client: Client,
  taskQueue: string,
  everySeconds = 300,
  o: ScheduleOptions = {},
): Promise<void> {
  try {
    await client.schedule.create({
      scheduleId: SWEEPER_SCHEDULE_ID,
      spec: { intervals: [{ every: `${everySeconds}s` }] },
      action: {
        type: 'startWorkflow',
        workflowType: holdSweeper,
        taskQueue,
        args: [{ graceSeconds: 60 }],
        workflowId: 'hold-sweeper',
      },
      policies: { overlap: 'SKIP' },
    });
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  await ensureReconciliationSchedule(client, taskQueue, o);
  await ensureHousekeepingSchedule(client, taskQueue);
}

export async function ensureReconciliationSchedule(client: Client, taskQueue: string, o: ScheduleOptions = {}) {
  const cron = o.reconciliationCron ?? loadConfig().RECONCILIATION_CRON;
  await upsertSchedule(client, o.reconciliationScheduleId ?? RECONCILIATION_SCHEDULE_ID, cron, {
    type: 'startWorkflow' as const,
    workflowType: reconcile,
    taskQueue,
    args: [{}] as [Record<string, never>],
    // Temporal appends the scheduled time: reconcile-2026-11-29T02:00:00Z.
    workflowId: 'reconcile',
    // The server stores a cron as calendars; the memo keeps the expression it was made from.
    memo: { reconciliationCron: cron },
  });
}

export interface HousekeepingScheduleOptions {
  /** Default: HOUSEKEEPING_CRON. */
  cron?: string;
  /** Default: IDEMPOTENCY_RETENTION_DAYS. */
  retentionDays?: number;
  /** Default: HOUSEKEEPING_SCHEDULE_ID (tests use their own). */
  scheduleId?: string;
}

/** Housekeeping upserted like reconciliation: a changed cron or retention takes effect at the next start. */
export async function ensureHousekeepingSchedule(
  client: Client,
  taskQueue: string,
  o: HousekeepingScheduleOptions = {},
) {
  const config = o.cron && o.retentionDays ? undefined : loadConfig();
  const cron = o.cron ?? config!.HOUSEKEEPING_CRON;
  const retentionDays = o.retentionDays ?? config!.IDEMPOTENCY_RETENTION_DAYS;
  await upsertSchedule(client, o.scheduleId ?? HOUSEKEEPING_SCHEDULE_ID, cron, {
    type: 'startWorkflow' as const,
    workflowType: housekeeping,
    taskQueue,
    args: [{ retentionDays }] as [HousekeepingInput],
    workflowId: 'housekeeping',
    memo: { housekeepingCron: cron, retentionDays },
  });
}

/**
 * Creates the schedule, or updates it when its task queue or memo (the settings it was made
 * from) differ; a second worker start with the same settings changes nothing.
 */
async function upsertSchedule(
  client: Client,
  scheduleId: string,
  cron: string,
  action: ScheduleOptionsAction & { taskQueue: string; memo: Record<string, unknown> },
): Promise<void> {
  const spec = { cronExpressions: [cron] };
  try {
    await client.schedule.create({ scheduleId, spec, action, policies: { overlap: 'SKIP' } });
    return;
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  const handle = client.schedule.getHandle(scheduleId);
  const current = await handle.describe();
  const a = current.action.type === 'startWorkflow' ? current.action : undefined;
  // Key by key: the server keeps a memo as a map, so the order its fields come back in is not ours.
  const memo = a?.memo ?? {};
  const same =
    Object.keys(memo).length === Object.keys(action.memo).length &&
    Object.entries(action.memo).every(([k, v]) => memo[k] === v);
  if (a?.taskQueue === action.taskQueue && same) return;
  await handle.update((prev) => ({ ...prev, spec, action }));
}
