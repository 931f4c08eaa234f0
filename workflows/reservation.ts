import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  defineQuery,
  defineUpdate,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { HoldView, PlaceResult, SettleResult } from '../ledger/holds';
import { Mutex, parsePositiveCredits } from './util';

/**
 * Reservation workflow, one per job: `hold:<customerId>:<holdId>`. It holds no money state of its
 * own: every movement is an activity keyed by workflow id + step, so retries never move credits
 * twice. Updates (not signals) where the caller needs the outcome: place, capture, extend, settle.
 */
export interface ReservationInput {
  customerId: string;
  holdId: string;
  amount: string;
  ttlSeconds: number;
  metadata?: Record<string, string>;
}

export type ReservationStatus = 'placing' | 'active' | 'rejected' | 'settled' | 'released' | 'expired';

export interface ReservationState {
  status: ReservationStatus;
  expiresAt: string;
  hold: HoldView | null;
  rejection: Extract<PlaceResult, { outcome: 'rejected' }> | null;
}

export const placeUpdate = defineUpdate<PlaceResult>('place');
export const captureUpdate = defineUpdate<HoldView, [{ amount: string }]>('capture');
export const extendUpdate = defineUpdate<HoldView, [{ amount?: string; ttlSeconds?: number }]>('extend');
export const settleUpdate = defineUpdate<SettleResult, [{ amount: string }]>('settle');
export const releaseUpdate = defineUpdate<HoldView, []>('release');
export const statusQuery = defineQuery<ReservationState>('status');

// Local activities: a ledger step is one short Postgres transaction, so running it inside the
// workflow task saves two server round trips per step (placement latency). A crash re-runs the
// step, which the ledger answers from its idempotency record.
const acts = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '200 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds' },
});

export const reservationWorkflowId = (customerId: string, holdId: string) => `hold:${customerId}:${holdId}`;

export async function reservation(input: ReservationInput): Promise<ReservationState> {
  const { workflowId } = workflowInfo();
  const state: ReservationState = {
    status: 'placing',
    expiresAt: new Date(Date.now() + input.ttlSeconds * 1000).toISOString(),
    hold: null,
    rejection: null,
  };
  let step = 0;
  let deadlineMoved = false;
  const mutex = new Mutex();
  const base = () => ({ key: `${workflowId}:${++step}`, customerId: input.customerId, holdId: input.holdId });
  const requireActive = () => {
    if (state.status !== 'active') {
      throw ApplicationFailure.create({
        type: 'HoldNotActive',
        message: `hold is ${state.status}`,
        nonRetryable: true,
      });
    }
  };

  setHandler(statusQuery, () => state);
  setHandler(placeUpdate, async (): Promise<PlaceResult> => {
    await condition(() => state.status !== 'placing');
    return state.rejection ?? { outcome: 'placed', hold: state.hold! };
  });
  setHandler(
    captureUpdate,
    (a) =>
      mutex.run(async () => {
        requireActive();
        state.hold = await acts.captureHold({ ...base(), amount: a.amount });
        return state.hold;
      }),
    { validator: (a: { amount: string }) => (requireActive(), parsePositiveCredits(a?.amount, 'amount')) },
  );
  setHandler(
    extendUpdate,
    (a) =>
      mutex.run(async () => {
        requireActive();
        const expiresAt = a.ttlSeconds ? new Date(Date.now() + a.ttlSeconds * 1000).toISOString() : undefined;
        state.hold = await acts.extendHold({ ...base(), amount: a.amount, expiresAt });
        if (state.hold.expiresAt !== state.expiresAt) {
          state.expiresAt = state.hold.expiresAt;
          deadlineMoved = true;
        }
        return state.hold;
      }),
    {
      validator: (a: { amount?: string; ttlSeconds?: number }) => {
        requireActive();
        if (a?.amount === undefined && a?.ttlSeconds === undefined) throw new Error('give amount and/or ttlSeconds');
        if (a.amount !== undefined) parsePositiveCredits(a.amount, 'amount');
        if (
          a.ttlSeconds !== undefined &&
          !(Number.isInteger(a.ttlSeconds) && a.ttlSeconds > 0 && a.ttlSeconds <= 31_536_000)
        ) {
          throw new Error('ttlSeconds must be an integer in 1..31536000');
        }
      },
    },
  );
  setHandler(
    settleUpdate,
    (a) =>
      mutex.run(async () => {
        requireActive();
        const r = await acts.settleHold({ ...base(), amount: a.amount });
        state.hold = r.hold;
        state.status = 'settled';
        return r;
      }),
    {
      validator: (a: { amount: string }) => (
        requireActive(),
        parsePositiveCredits(a?.amount, 'amount', { allowZero: true })
      ),
    },
  );
  setHandler(
    releaseUpdate,
    () =>
      mutex.run(async () => {
        requireActive();
        state.hold = await acts.releaseHold({ ...base(), status: 'released' });
        state.status = 'released';
        return state.hold;
      }),
    { validator: () => requireActive() },
  );

  const placed = await acts.placeHold({
    ...base(),
    workflowId,
    amount: input.amount,
    expiresAt: state.expiresAt,
    metadata: input.metadata,
  });
  if (placed.outcome === 'rejected') {
    state.rejection = placed;
    state.status = 'rejected';
    return state;
  }
  state.hold = placed.hold;
  state.status = 'active';

  // Durable TTL: if every worker is down when it passes, the timer fires when one comes back.
  while (state.status === 'active') {
    const wait = Math.max(0, Date.parse(state.expiresAt) - Date.now());
    const woke = await condition(() => state.status !== 'active' || deadlineMoved, wait);
    deadlineMoved = false;
    if (!woke && Date.now() >= Date.parse(state.expiresAt)) {
      await mutex.run(async () => {
        if (state.status !== 'active') return;
        state.hold = await acts.releaseHold({ ...base(), status: 'expired', ifActive: true });
        state.status = 'expired';
      });
    }
  }
  await condition(allHandlersFinished);
  return state;
}
