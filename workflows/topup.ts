import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import { composeKey } from '../lib/ids';
import { pay, paymentSteps, type PaymentOutcome } from './payment';

/**
 * Auto top-up, one per wallet: `topup:<customerId>`. Debits that leave the wallet below its
 * threshold signal it; each look at the wallet (a plan step, under the wallet lock) either
 * charges once or finds nothing to do. While a top-up is charging or cooling down, triggers only
 * set a flag, so a burst of debits becomes one charge per window, never one per increment.
 */
export interface TopUpInput {
  customerId: string;
  /** Look at the wallet at once (set when continuing as new with a trigger pending). */
  triggered?: boolean;
  /** Continue as new after this many plans (history stays bounded). */
  maxPlans?: number;
  /** With nothing to do, finish after this long without a trigger (the next debit starts it again). */
  idleMs?: number;
}

export interface TopUpStatus {
  customerId: string;
  status: 'idle' | 'planning' | 'charging' | 'cooldown';
  triggers: number;
  plans: number;
  lastPlan: string | null;
  lastOutcome: PaymentOutcome | null;
  waitingUntil: string | null;
}

export const belowThresholdSignal = defineSignal('belowThreshold');
export const topUpStatusQuery = defineQuery<TopUpStatus>('status');

const DAY_MS = 86_400_000;

export async function autoTopUp(input: TopUpInput): Promise<TopUpStatus> {
  const state: TopUpStatus = {
    customerId: input.customerId,
    status: 'idle',
    triggers: 0,
    plans: 0,
    lastPlan: null,
    lastOutcome: null,
    waitingUntil: null,
  };
  let triggered = input.triggered ?? false;
  setHandler(belowThresholdSignal, () => {
    triggered = true;
    state.triggers++;
  });
  setHandler(topUpStatusQuery, () => state);

  for (;;) {
    if (!triggered) {
      state.status = 'idle';
      if (!(await condition(() => triggered, input.idleMs ?? DAY_MS))) return state;
    }
    if (state.plans >= (input.maxPlans ?? 200) || workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof autoTopUp>({ ...input, triggered: true });
    }
    triggered = false;
    state.status = 'planning';
    const asOf = new Date(Date.now()).toISOString(); // workflow time: fixed in history, skippable in tests
    const key = composeKey('topup-plan', input.customerId, workflowInfo().runId, String(state.plans++));
    const plan = await paymentSteps.planTopUp({ customerId: input.customerId, asOf, key });
    state.lastPlan = plan.action === 'none' ? plan.reason : plan.action;
    if (plan.action === 'none') continue;
    if (plan.action === 'wait') {
      // Cooldown (or backoff after a failure): triggers meanwhile are absorbed, then it looks again.
      state.status = 'cooldown';
      state.waitingUntil = plan.until;
      await sleep(Math.max(0, Date.parse(plan.until) - Date.now()));
      state.waitingUntil = null;
      triggered = true;
      continue;
    }
    state.status = 'charging';
    state.lastOutcome = await pay(plan.order);
    triggered = true; // look again: the plan waits out the cooldown, or finds the wallet topped up
  }
}
