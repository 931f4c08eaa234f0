import { continueAsNew, defineQuery, proxyActivities, setHandler, uuid4, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';

const { startReconciliation, planReconciliationPages, failReconciliation } = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 10 },
});
// A page, and the whole-database checks, heartbeat: a lost worker is noticed in 30 s, not at the timeout.
const { reconcilePage, finishReconciliation } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 10 },
});

export interface ReconcileInput {
  /** Set by the API (its 202 answers it); a scheduled run makes its own. */
  runId?: string;
  /** YYYY-MM-DD; default: the day the run started (UTC). */
  date?: string;
  /** Wallets per page activity (5,000: ~0.1 s a page on the bench's ledger). */
  pageSize?: number;
  /** Pages per workflow run before continue-as-new (the history stays small). */
  pagesPerRun?: number;
  /** Pages checked side by side (each its own activity and database connection). */
  concurrency?: number;
  /** Lots past expiry by more than this, with a remainder, are reported. */
  expiryGraceSeconds?: number;
  /** Gateway charges and refunds newer than this, before the run started, are still in flight (default 600). */
  gatewaySettleSeconds?: number;
  /** Carried over continue-as-new: the last customer id checked. */
  cursor?: string;
}

export interface ReconcileStatus {
  runId: string;
  date: string;
  phase: 'starting' | 'checking' | 'finishing' | 'failed';
  /** Pages checked by this workflow run (continue-as-new starts a new count; the run row has the total). */
  pages: number;
  /** The last customer id checked ('' before the first page). */
  cursor: string | null;
}
export const reconcileStatusQuery = defineQuery<ReconcileStatus>('status');

export const reconcileWorkflowId = (date: string, runId: string) => `reconcile:${date}:${runId}`;

/**
 * Reconciliation: every wallet, page by page (keyset on customer id), checked from the ledger's
 * entries and the gateway; the report accumulates in the run row, so continue-as-new carries only
 * the cursor. Reads and reports; never fixes.
 */
export async function reconcile(input: ReconcileInput = {}) {
  const runId = input.runId ?? uuid4();
  const date = input.date ?? new Date(workflowInfo().startTime.getTime()).toISOString().slice(0, 10);
  const pageSize = input.pageSize ?? 5000;
  const pagesPerRun = input.pagesPerRun ?? 50;
  const expiryGraceSeconds = input.expiryGraceSeconds ?? 3600;
  const concurrency = input.concurrency ?? 4;
  const status: ReconcileStatus = { runId, date, phase: 'starting', pages: 0, cursor: input.cursor ?? '' };
  setHandler(reconcileStatusQuery, () => status);
  if (input.cursor === undefined) await startReconciliation({ runId, date, workflowId: workflowInfo().workflowId });
  let cursor: string | null = input.cursor ?? '';
  status.phase = 'checking';
  try {
    for (let done = 0; done < pagesPerRun && cursor !== null;) {
      const after: string = cursor;
      // A few pages per lane at a time: lanes run side by side, each page after the other.
      const { bounds, end } = await planReconciliationPages({
        after,
        size: pageSize,
        count: Math.min(concurrency * 4, pagesPerRun - done),
      });
      const pages = bounds.map((last, k) => ({
        runId,
        after: k === 0 ? after : bounds[k - 1]!,
        last,
        expiryGraceSeconds,
      }));
      await Promise.all(
        Array.from({ length: concurrency }, async (_, lane) => {
          for (let k = lane; k < pages.length; k += concurrency) await reconcilePage(pages[k]!);
        }),
      );
      done += bounds.length;
      cursor = end ? null : bounds[bounds.length - 1]!;
      status.pages += bounds.length;
      status.cursor = cursor;
    }
    if (cursor === null) {
      status.phase = 'finishing';
      return await finishReconciliation({ runId, gatewaySettleSeconds: input.gatewaySettleSeconds });
    }
  } catch (err) {
    status.phase = 'failed';
    await failReconciliation({ runId });
    throw err;
  }
  return continueAsNew<typeof reconcile>({
    ...input,
    runId,
    date,
    pageSize,
    pagesPerRun,
    concurrency,
    expiryGraceSeconds,
    cursor,
  });
}
