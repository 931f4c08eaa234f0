import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { activityContext } from './log-context';

export const workflowsPath = require.resolve('../workflows');

export interface WorkerSetup extends ActivityDeps {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  /** Pre-built bundle (tests bundle once per run); otherwise workflowsPath is bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

export function createWorker(s: WorkerSetup): Promise<Worker> {
  return Worker.create({
    connection: s.connection,
    namespace: s.namespace,
    taskQueue: s.taskQueue,
    ...(s.workflowBundle ? { workflowBundle: s.workflowBundle } : { workflowsPath }),
    activities: createActivities({ ...s, taskQueue: s.taskQueue }),
    interceptors: { activity: [activityContext] },
  });
}
