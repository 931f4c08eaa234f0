import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Deadline } from '../ledger/lifecycle';

/**
 * Credit lifecycle, one per customer: `wallet:<customerId>`. It keeps only the next deadlines
 * (the ledger has the lots), sleeps until the soonest, and books what is due through one
 * idempotent activity. Grants signal it (signal-with-start); voids and depletion simply leave
 * nothing to book when the timer fires. Continue-as-new keeps its history small forever.
 */
export interface LifecycleInput {
  customerId: string;
  alertLeadMs?: number;
  /** Continue as new after this many wake-ups (history stays bounded). */
  maxWakeUps?: number;
}

export interface LifecycleState {
  customerId: string;
  upcoming: Deadline[];
  wakeUps: number;
  lastTickAt: string | null;
}

export const lotsChangedSignal = defineSignal('lotsChanged');
export const deadlinesQuery = defineQuery<LifecycleState>('deadlines');
/** The same state under the name every creditflow workflow answers (`temporal workflow query --type status`). */
export const lifecycleStatusQuery = defineQuery<LifecycleState>('status');

// Bounded: an outage longer than an hour fails the run visibly (Temporal UI); the hold sweeper's
// safety net restarts lifecycles whose lots are overdue, so nothing is left unbooked for good.
const { lifecycleTick } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '1 hour',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

export const lifecycleWorkflowId = (customerId: string) => `wallet:${customerId}`;

/** With nothing upcoming, wait this long for a new grant before finishing (the next grant restarts it). */
const IDLE_MS = 30 * 86_400_000;

export async function creditLifecycle(input: LifecycleInput): Promise<LifecycleState> {
  const state: LifecycleState = { customerId: input.customerId, upcoming: [], wakeUps: 0, lastTickAt: null };
  let changed = true;
  setHandler(lotsChangedSignal, () => {
    changed = true;
  });
  setHandler(deadlinesQuery, () => state);
  setHandler(lifecycleStatusQuery, () => state);

  for (;;) {
    changed = false;
    const asOf = new Date(Date.now()).toISOString(); // workflow time: deterministic, skippable in tests
    const r = await lifecycleTick({ customerId: input.customerId, asOf, alertLeadMs: input.alertLeadMs });
    state.upcoming = r.upcoming;
    state.lastTickAt = asOf;
    state.wakeUps++;
    const next = state.upcoming[0];
    const wait = next ? Math.max(0, Date.parse(next.at) - Date.now()) : IDLE_MS;
    const signalled = await condition(() => changed, wait);
    if (!next && !signalled) return state; // idle: done until the next grant starts it again
    if (state.wakeUps >= (input.maxWakeUps ?? 500) || workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof creditLifecycle>(input);
    }
  }
}
