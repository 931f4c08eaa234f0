import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { withAudit } from '../lib/audit';

/**
 * Runs every activity inside its workflow id and activity type (lib/audit.ts): each log line it
 * writes carries them (lib/logger.ts), and each ledger transaction it writes records the workflow.
 */
export const activityContext: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    execute: (input, next) =>
      withAudit({ workflowId: ctx.info.workflowExecution?.workflowId, activityType: ctx.info.activityType }, () =>
        next(input),
      ),
  },
});
