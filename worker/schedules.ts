import { ScheduleAlreadyRunning, type Client } from '@temporalio/client';
import { loadConfig } from '../lib/config';
import { holdSweeper } from '../workflows/sweeper';
import { reconcile } from '../workflows/reconcile';

export const SWEEPER_SCHEDULE_ID = 'creditflow-hold-sweeper';
export const RECONCILIATION_SCHEDULE_ID = 'creditflow-reconciliation';

export interface ScheduleOptions {
  /** Default: RECONCILIATION_CRON. */
  reconciliationCron?: string;
  /** Default: RECONCILIATION_SCHEDULE_ID (tests use their own). */
  reconciliationScheduleId?: string;
}

/**
 * The worker's Temporal Schedules (visible in the Web UI), created at start: the stranded-hold
 * sweeper once; reconciliation upserted, so a changed RECONCILIATION_CRON takes effect.
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
}

export async function ensureReconciliationSchedule(client: Client, taskQueue: string, o: ScheduleOptions = {}) {
  const cron = o.reconciliationCron ?? loadConfig().RECONCILIATION_CRON;
  const scheduleId = o.reconciliationScheduleId ?? RECONCILIATION_SCHEDULE_ID;
  const spec = { cronExpressions: [cron] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: reconcile,
    taskQueue,
    args: [{}] as [Record<string, never>],
    // Temporal appends the scheduled time: reconcile-2026-11-29T02:00:00Z.
    workflowId: 'reconcile',
    // The server stores a cron as calendars; the memo keeps the expression it was made from.
    memo: { reconciliationCron: cron },
  };
  try {
    await client.schedule.create({ scheduleId, spec, action, policies: { overlap: 'SKIP' } });
    return;
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  const handle = client.schedule.getHandle(scheduleId);
  const current = await handle.describe();
  const a = current.action.type === 'startWorkflow' ? current.action : undefined;
  if (a?.taskQueue === taskQueue && a.memo?.reconciliationCron === cron) return;
  await handle.update((prev) => ({ ...prev, spec, action }));
}
