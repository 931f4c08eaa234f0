import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { Router } from 'express';
import { insertAuditEvent } from '../../db/audit-events';
import { getRun, latestRun, type RunRow } from '../../db/reconciliation';
import type { Pool } from '../../db/pool';
import { DependencyUnavailable, isUnavailable } from '../../lib/unavailable';
import { reconcile, reconcileWorkflowId } from '../../workflows/reconcile';
import { allow } from '../auth';
import { problem } from '../problem';

export type StartReconciliation = () => Promise<{ runId: string; workflowId: string }>;

/** Starts `reconcile:<date>:<runId>` now (the API's on-demand run; the Schedule runs it daily). */
export const reconciliationStarter =
  (client: Client, taskQueue: string): StartReconciliation =>
  async () => {
    const runId = randomUUID();
    const date = new Date().toISOString().slice(0, 10);
    const workflowId = reconcileWorkflowId(date, runId);
    try {
      await client.withDeadline(Date.now() + 5000, () =>
        client.workflow.start(reconcile, { workflowId, taskQueue, args: [{ runId, date }] }),
      );
    } catch (err) {
      throw isUnavailable(err) || /deadline|Failed to connect/i.test(String(err))
        ? new DependencyUnavailable('temporal', 'Temporal did not answer; retry')
        : err;
    }
    return { runId, workflowId };
  };

/**
 * An on-demand run, as POST /v1/reconciliation/runs and `cli reconcile run` ask for it: started,
 * then recorded in audit_events as requested by the caller (API key or `cli:<operator>`).
 */
export async function requestReconciliation(
  pool: Pool,
  start: StartReconciliation,
  detail: Record<string, unknown> = {},
) {
  const started = await start();
  await insertAuditEvent(pool, {
    action: 'reconciliation.requested',
    subject: `reconciliation_run:${started.runId}`,
    detail: { ...detail, workflowId: started.workflowId },
  });
  return started;
}

export const reconciliationView = (r: RunRow) => ({
  id: r.id,
  date: r.date,
  workflowId: r.workflow_id,
  status: r.status,
  startedAt: r.started_at.toISOString(),
  finishedAt: r.finished_at?.toISOString() ?? null,
  checked: { wallets: 0, lots: 0, transactions: 0, events: 0, payments: 0, ...r.summary.checked },
  discrepancyCount: r.summary.discrepancyCount ?? r.discrepancies.length,
  /** At most STORED_MAX are kept; discrepancyCount counts them all. */
  discrepancies: r.discrepancies,
  notes: r.summary.notes ?? [],
});

/** Reconciliation reports (API.md "Operations"); admin only. */
export function reconciliationRoutes(deps: { pool: Pool; start?: StartReconciliation }): Router {
  const r = Router();

  r.post('/reconciliation/runs', allow([]), async (_req, res) => {
    if (!deps.start) throw new DependencyUnavailable('temporal', 'Temporal is not configured');
    const started = await requestReconciliation(deps.pool, deps.start);
    res.status(202).location(`/v1/reconciliation/runs/${started.runId}`).json(started);
  });

  r.get('/reconciliation/latest', allow([]), async (_req, res) => {
    const run = await latestRun(deps.pool);
    if (!run) throw problem(404, 'no reconciliation has run yet');
    res.json(reconciliationView(run));
  });

  r.get('/reconciliation/runs/:id', allow([]), async (req, res) => {
    const id = String(req.params.id);
    const run = /^[A-Za-z0-9_.:-]{1,128}$/.test(id) ? await getRun(deps.pool, id) : null;
    if (!run) throw problem(404, `no reconciliation run ${id}`);
    res.json(reconciliationView(run));
  });
  return r;
}
