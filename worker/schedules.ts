import { ScheduleAlreadyRunning, type Client } from '@temporalio/client';
import { holdSweeper } from '../workflows/sweeper';

export const SWEEPER_SCHEDULE_ID = 'creditflow-hold-sweeper';

/** The stranded-hold sweeper runs on a Temporal Schedule (visible in the Web UI); created once. */
export async function ensureSchedules(client: Client, taskQueue: string, everySeconds = 300): Promise<void> {
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
}
