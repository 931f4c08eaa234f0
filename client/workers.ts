import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

/** A live worker re-polls at least once a minute (seen: last access ≤ 60 s old); silent longer → gone. */
const POLLER_FRESH_MS = 75_000;

/**
 * Resolves when some worker polls the task queue (Temporal's own poller list), rejects otherwise:
 * hold operations need a worker, so readiness says so when none is there.
 */
export async function assertWorkerPolling(client: Client, taskQueue: string, now = Date.now()): Promise<void> {
  const r = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  const fresh = (r.pollers ?? []).some((p) => {
    const t = p.lastAccessTime;
    if (!t?.seconds) return false;
    return now - Number(t.seconds) * 1000 < POLLER_FRESH_MS;
  });
  if (!fresh) throw new Error(`no worker is polling task queue ${taskQueue}`);
}
