import type { Client } from '@temporalio/client';
import type { Pool } from '../db/pool';
import { walletsBelowThreshold } from '../db/topup-rules';
import { topUpWorkflowId } from '../ledger/payments';
import type { Logger } from '../lib/logger';
import { autoTopUp, belowThresholdSignal } from '../workflows/topup';
import { CustomerIdKey } from './holds';

/** Starts the wallet's top-up workflow or signals the running one (one call, no race). */
export async function notifyTopUp(
  client: Client,
  taskQueue: string,
  customerId: string,
  opts: { searchAttributes?: boolean; timeoutMs?: number } = {},
): Promise<void> {
  await client.withDeadline(Date.now() + (opts.timeoutMs ?? 3000), () =>
    client.workflow.signalWithStart(autoTopUp, {
      workflowId: topUpWorkflowId(customerId),
      taskQueue,
      args: [{ customerId }],
      signal: belowThresholdSignal,
      ...(opts.searchAttributes === false
        ? {}
        : { typedSearchAttributes: [{ key: CustomerIdKey, value: customerId }] }),
    }),
  );
}

/**
 * After a debit commits: wallets left below their top-up threshold (counting top-ups in flight)
 * get their workflow signalled. Best effort, coalesced and bounded: at most one check runs per
 * process at a time (a burst of debits becomes a few queries, not one per request); a failed
 * signal is logged and the periodic scan (the sweeper) catches the wallet up.
 */
export class TopUpTrigger {
  private readonly pending = new Set<string>();
  private active: Promise<void> | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly client: () => Promise<Client>,
    private readonly taskQueue: string,
    private readonly opts: { searchAttributes?: boolean; timeoutMs?: number; log?: Logger } = {},
  ) {}

  /** Fire and forget: never throws, never delays the caller's reply. */
  check(customerIds: Iterable<string>): void {
    for (const id of customerIds) this.pending.add(id);
    if (this.pending.size === 0 || this.active) return;
    this.active = this.drain().finally(() => {
      this.active = undefined;
    });
  }

  /** Waits until the checks asked for so far are done (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.active) await this.active;
  }

  /** Signals every wallet of `customerIds` (all wallets when null) that needs a top-up; returns them. */
  async signalBelowThreshold(customerIds: readonly string[] | null, limit?: number): Promise<string[]> {
    const below = await walletsBelowThreshold(this.pool, customerIds, limit);
    if (below.length === 0) return below;
    const client = await this.client();
    const results = await Promise.allSettled(below.map((id) => notifyTopUp(client, this.taskQueue, id, this.opts)));
    const failed = below.filter((_, i) => results[i]!.status === 'rejected');
    if (failed.length > 0) {
      const err = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as unknown;
      throw Object.assign(new Error(`could not signal top-up workflows: ${String(err)}`), { customers: failed });
    }
    return below;
  }

  private async drain(): Promise<void> {
    while (this.pending.size > 0) {
      const ids = [...this.pending];
      this.pending.clear();
      try {
        await this.signalBelowThreshold(ids);
      } catch (err) {
        this.opts.log?.warn({ err: String(err), customers: ids.length }, 'top-up check failed; the scan retries');
      }
    }
  }
}
