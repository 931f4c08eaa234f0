import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import {
  addPage,
  activeHolds,
  checkGlobal,
  checkPage,
  planPages,
  finishRun,
  getRun,
  startRun,
  type Discrepancy,
} from '../db/reconciliation';
import { withTransaction } from '../db/pool';
import { crashPoint } from './crash';
import { notify } from '../ledger/notify';
import { checkGateway } from '../payments/reconcile';
import type { ActivityDeps } from './index';

/** Re-read after asking Temporal: a hold released since the page's snapshot is no discrepancy. */
const stillActive = async (pool: ActivityDeps['pool'], customerId: string, holdId: string) =>
  (
    await pool.query(`SELECT 1 FROM holds WHERE customer_id = $1 AND id = $2 AND status = 'active'`, [
      customerId,
      holdId,
    ])
  ).rowCount === 1;

/** Details of a run's notification are capped: the full list is in the stored report. */
const NOTIFY_MAX = 100;
/** Gateway objects of the last two days are judged each night (the runs overlap)… */
const GATEWAY_LOOKBACK_MS = 48 * 3600_000;
/** …up to shortly before the run started: a purchase or refund still in flight is no discrepancy. */
const GATEWAY_SETTLE_SECONDS = 600;

/** Reconciliation reads and reports; it never moves credits or money. */
export function reconcileActivities(deps: ActivityDeps) {
  const sandbox = () => deps.gateway?.name === 'sandbox';
  const listable = () => (deps.gateway?.listSince && !sandbox() ? deps.gateway : null);
  return {
    async startReconciliation(o: { runId: string; date: string; workflowId: string }) {
      await startRun(deps.pool, { id: o.runId, date: o.date, workflowId: o.workflowId });
    },

    /** The next `count` pages' bounds (so the workflow can check them side by side). */
    async planReconciliationPages(o: { after: string; size: number; count: number }) {
      return planPages(deps.pool, o);
    },

    /** The wallets in (after, last]. */
    async reconcilePage(o: { runId: string; after: string; last: string; expiryGraceSeconds: number }) {
      crashPoint('reconcilePage', 'before');
      Context.current().heartbeat(o.after);
      // One snapshot for the page's checks: rows written between two queries are no discrepancy.
      const { page, holds } = await withTransaction(deps.pool, async (tx) => {
        await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
        // The page's aggregates fit in memory: hashed, not sorted (3× faster on a 40k-entry page).
        await tx.query(`SET LOCAL work_mem = '64MB'`);
        // Compiling the page statement (JIT) cost 4× more than running it.
        await tx.query('SET LOCAL jit = off');
        const p = await checkPage(tx, { ...o, sandbox: sandbox() });
        return { page: p, holds: await activeHolds(tx, o.after, o.last) };
      });
      Context.current().heartbeat(o.after);
      const found: Discrepancy[] = [...page.discrepancies];
      const notes: string[] = [];
      if (o.after === '' && !sandbox() && !listable())
        notes.push(`gateway ${deps.gateway?.name ?? 'none'}: cannot be listed, ledger-vs-gateway checks skipped`);
      // A hold is active until its reservation workflow releases it: a hold whose workflow is gone is stranded.
      if (holds.length > 0 && !deps.temporal) notes.push('no Temporal client: hold workflows not checked');
      const client = holds.length > 0 && deps.temporal ? await deps.temporal() : null;
      for (const h of client ? holds : []) {
        let status = 'NOT_FOUND';
        try {
          status = (await client!.workflow.getHandle(h.workflow_id).describe()).status.name;
        } catch (err) {
          // Temporal away is no verdict: the activity retries.
          if (!(err instanceof WorkflowNotFoundError)) throw err;
        }
        Context.current().heartbeat(o.after);
        if (status === 'RUNNING' || !(await stillActive(deps.pool, h.customer_id, h.id))) continue;
        found.push({
          check: 'holds: an active hold has a running workflow',
          customerId: h.customer_id,
          subject: h.id,
          detail: `hold active, workflow ${h.workflow_id} ${status}`,
        });
      }
      await addPage(deps.pool, o.runId, o.after, {
        wallets: page.checked.wallets,
        discrepancies: found,
        checked: page.checked,
        notes,
      });
      crashPoint('reconcilePage', 'after');
      return { wallets: page.checked.wallets, discrepancies: found.length };
    },

    /** A run that cannot finish says so (its partial report stays). */
    async failReconciliation(o: { runId: string }) {
      await finishRun(deps.pool, o.runId, true);
    },

    /** Whole-database checks, then the verdict and (if any) ONE notification, in one transaction. */
    async finishReconciliation(o: { runId: string; gatewaySettleSeconds?: number }) {
      Context.current().heartbeat('global');
      const global = await checkGlobal(deps.pool);
      const none = { wallets: 0, lots: 0, transactions: 0, events: 0, payments: 0 };
      await addPage(deps.pool, o.runId, '<global>', { wallets: 0, discrepancies: global, checked: none });
      const gateway = listable();
      const run = await getRun(deps.pool, o.runId);
      // A retried attempt whose gateway page is already counted does not list the gateway again.
      if (gateway && run?.status === 'running' && !run.summary.pagesDone.includes('<gateway>')) {
        Context.current().heartbeat('gateway');
        // The window comes from the run's recorded start: a retried attempt judges the same objects.
        const until = new Date(run.started_at.getTime() - (o.gatewaySettleSeconds ?? GATEWAY_SETTLE_SECONDS) * 1000);
        const since = new Date(until.getTime() - GATEWAY_LOOKBACK_MS);
        const g = await checkGateway(deps.pool, gateway, { since, until });
        await addPage(deps.pool, o.runId, '<gateway>', {
          wallets: 0,
          discrepancies: g.discrepancies,
          checked: none,
          notes: [
            `gateway ${gateway.name}: ${g.listed} charges and refunds since ${since.toISOString()} compared with the ledger`,
          ],
        });
      }
      Context.current().heartbeat('verdict');
      const verdict = await withTransaction(deps.pool, async (tx) => {
        // null: an earlier attempt finished it (and notified); its verdict stands
        const run = (await finishRun(tx, o.runId)) ?? (await getRun(tx, o.runId));
        if (!run) return null;
        const customers = [...new Set(run.discrepancies.map((d) => d.customerId).filter((c): c is string => !!c))];
        // once per run: the outbox dedupes on the run's key
        if (run.status === 'discrepancies')
          await notify(tx, [
            {
              type: 'reconciliation.discrepancy',
              customerId: null, // about the run; the customers are in the data
              dedupeKey: `reconciliation.discrepancy:${run.id}`,
              data: {
                runId: run.id,
                date: run.date,
                count: run.summary.discrepancyCount ?? run.discrepancies.length,
                customers,
                discrepancies: run.discrepancies.slice(0, NOTIFY_MAX),
              },
            },
          ]);
        return {
          status: run.status,
          discrepancies: run.summary.discrepancyCount ?? 0,
          checkedWallets: run.checked_wallets,
        };
      });
      crashPoint('finishReconciliation', 'after');
      return verdict;
    },
  };
}
