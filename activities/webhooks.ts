import { Context, log } from '@temporalio/activity';
import { liveEndpointIds } from '../db/webhooks';
import { runEndpointLoop, type LoopOutcome } from '../webhooks/engine';
import { policyFromEnv } from '../webhooks/url-policy';
import { startWebhookDelivery } from '../webhooks/workflows';
import type { ActivityDeps } from './index';

/** Webhook delivery's activities (spread into createActivities). */
export function webhookActivities(deps: ActivityDeps) {
  return {
    /** One run of an endpoint's delivery loop (workflows/webhooks.ts); heartbeats throughout. */
    async runWebhookEndpoint(o: { endpointId: string; runForMs: number }): Promise<LoopOutcome> {
      const ctx = Context.current();
      return runEndpointLoop(deps.pool, o.endpointId, {
        runForMs: o.runForMs,
        policy: policyFromEnv(),
        heartbeat: () => ctx.heartbeat(),
        signal: ctx.cancellationSignal,
      });
    },

    /** Starts the delivery workflow of every live endpoint that lacks one; returns how many it asked. */
    async ensureWebhookWorkflows(o: { limit?: number }): Promise<{ started: number }> {
      if (!deps.temporal || !deps.taskQueue) return { started: 0 };
      const client = await deps.temporal();
      const ids = await liveEndpointIds(deps.pool, o.limit ?? 10_000);
      let failed = 0;
      for (let i = 0; i < ids.length; i += 50) {
        const batch = ids.slice(i, i + 50).map((id) => startWebhookDelivery(client, deps.taskQueue!, id));
        failed += (await Promise.allSettled(batch)).filter((r) => r.status === 'rejected').length;
      }
      if (failed > 0) log.warn('could not start every webhook delivery workflow', { failed });
      return { started: ids.length - failed };
    },
  };
}
