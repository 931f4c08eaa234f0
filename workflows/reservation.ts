import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  defineQuery,
  defineUpdate,
  log,
  patched,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { creditsProblem, deadlineProblem, ttlProblem, type ReserveRequest } from '../domain/hold-requests';
import type { HoldView, PlaceResult, SettleResult } from '../ledger/holds';
import { Mutex } from './util';

/**
 * Reservation workflow, one per job: `hold:<customerId>:<holdId>`. It holds no money state of its
 * own: every movement is an activity keyed by workflow id + step, so retries never move credits
 * twice. Updates (not signals) where the caller needs the outcome: place, capture, extend, settle.
 *
 * Every input of a ledger step is fixed before the step runs (deadlines come from the caller or
 * from history, never from the clock of the current task): a workflow task retried after a crash
 * sends the identical request, which the ledger answers from its idempotency record.
 */
/** The caller's request (its `expiresAt` fixed by the typed client before the start), plus: */
export interface ReservationInput extends ReserveRequest {
  /** Set by continue-as-new: the hold is already on the ledger, placement is not repeated. */
  resume?: { step: number; hold: HoldView; expiresAt: string };
}

export type ReservationStatus = 'placing' | 'active' | 'rejected' | 'settled' | 'released' | 'expired' | 'failed';

export interface ReservationState {
  status: ReservationStatus;
  expiresAt: string;
  hold: HoldView | null;
  rejection: Extract<PlaceResult, { outcome: 'rejected' }> | null;
  /** Why the reservation ended without a normal outcome, and what became of its credits. */
  failure?: string | null;
}

export interface ExtendArgs {
  amount?: string;
  /** Kept for workflows started before deadlines were fixed by the caller. */
  ttlSeconds?: number;
  expiresAt?: string;
}

export const placeUpdate = defineUpdate<PlaceResult>('place');
export const captureUpdate = defineUpdate<HoldView, [{ amount: string }]>('capture');
export const extendUpdate = defineUpdate<HoldView, [ExtendArgs]>('extend');
export const settleUpdate = defineUpdate<SettleResult, [{ amount: string }]>('settle');
export const releaseUpdate = defineUpdate<HoldView, []>('release');
export const statusQuery = defineQuery<ReservationState>('status');

// Local activities: a ledger step is one short Postgres transaction, so running it inside the
// workflow task saves two server round trips per step (placement latency). A crash re-runs the
// step, which the ledger answers from its idempotency record. Bounded: an outage longer than the
// schedule-to-close window ends the operation visibly instead of retrying forever.
const acts = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  scheduleToCloseTimeout: '5 minutes',
  retry: { initialInterval: '200 milliseconds', backoffCoefficient: 2, maximumInterval: '10 seconds' },
});

export const reservationWorkflowId = (customerId: string, holdId: string) => `hold:${customerId}:${holdId}`;

const DEFAULT_MAX_UPDATES = 1000;

const fail = (type: string, message: string) => ApplicationFailure.create({ type, message, nonRetryable: true });
const check = (problem: string | null) => {
  if (problem) throw fail('InvalidRequest', problem);
};
const errorMessage = (err: unknown) => (err instanceof Error ? err.message : String(err));

export async function reservation(input: ReservationInput): Promise<ReservationState> {
  const { workflowId } = workflowInfo();
  // Histories started before this patch computed deadlines from the task's clock; they replay as they ran.
  const fixedInputs = patched('fixed-step-inputs');
  const initialDeadline = fixedInputs
    ? (input.resume?.expiresAt ??
      input.expiresAt ??
      new Date(workflowInfo().startTime.getTime() + input.ttlSeconds * 1000).toISOString())
    : new Date(Date.now() + input.ttlSeconds * 1000).toISOString();
  const state: ReservationState = {
    status: input.resume ? 'active' : 'placing',
    expiresAt: initialDeadline,
    hold: input.resume?.hold ?? null,
    rejection: null,
    failure: null,
  };
  let step = input.resume?.step ?? 0;
  let updates = 0;
  let deadlineMoved = false;
  const mutex = new Mutex();
  const base = () => ({ key: `${workflowId}:${++step}`, customerId: input.customerId, holdId: input.holdId });
  const continueDue = () =>
    fixedInputs && (updates >= (input.maxUpdates ?? DEFAULT_MAX_UPDATES) || workflowInfo().continueAsNewSuggested);
  const requireActive = () => {
    if (state.status !== 'active') throw fail('HoldNotActive', `hold is ${state.status}`);
  };
  const requireLive = () => {
    requireActive();
    if (fixedInputs && Date.now() >= Date.parse(state.expiresAt)) throw fail('HoldExpired', 'the hold has expired');
  };
  const counted =
    <A extends unknown[], R>(fn: (...a: A) => Promise<R>) =>
    (...a: A) =>
      mutex.run(async () => {
        updates++;
        return fn(...a);
      });

  setHandler(statusQuery, () => state);
  setHandler(placeUpdate, async (): Promise<PlaceResult> => {
    await condition(() => state.status !== 'placing');
    if (state.status === 'failed') throw fail('HoldFailed', state.failure ?? 'placement failed');
    return state.rejection ?? { outcome: 'placed', hold: state.hold! };
  });
  setHandler(
    captureUpdate,
    counted(async (a: { amount: string }) => {
      requireActive();
      state.hold = await acts.captureHold({ ...base(), amount: a.amount });
      return state.hold;
    }),
    { validator: (a: { amount: string }) => (requireLive(), check(creditsProblem(a?.amount, 'amount'))) },
  );
  setHandler(
    extendUpdate,
    counted(async (a: ExtendArgs) => {
      requireActive();
      const expiresAt = fixedInputs
        ? a.expiresAt
        : a.ttlSeconds
          ? new Date(Date.now() + a.ttlSeconds * 1000).toISOString()
          : undefined;
      state.hold = await acts.extendHold({ ...base(), amount: a.amount, expiresAt });
      if (state.hold.expiresAt !== state.expiresAt) {
        state.expiresAt = state.hold.expiresAt;
        deadlineMoved = true;
      }
      return state.hold;
    }),
    {
      validator: (a: ExtendArgs) => {
        requireLive();
        if (a?.amount === undefined && a?.expiresAt === undefined)
          throw fail('InvalidRequest', 'give amount and/or expiresAt');
        if (a.amount !== undefined) check(creditsProblem(a.amount, 'amount'));
        check(ttlProblem(a.ttlSeconds));
        if (a.expiresAt !== undefined) check(deadlineProblem(a.expiresAt, 'expiresAt'));
      },
    },
  );
  setHandler(
    settleUpdate,
    counted(async (a: { amount: string }) => {
      requireActive();
      const r = await acts.settleHold({ ...base(), amount: a.amount });
      state.hold = r.hold;
      state.status = 'settled';
      return r;
    }),
    {
      validator: (a: { amount: string }) => (
        requireLive(),
        check(creditsProblem(a?.amount, 'amount', { allowZero: true }))
      ),
    },
  );
  setHandler(
    releaseUpdate,
    counted(async () => {
      requireActive();
      state.hold = await acts.releaseHold({ ...base(), status: 'released' });
      state.status = 'released';
      return state.hold;
    }),
    { validator: () => requireActive() },
  );

  /** Ends the reservation visibly, releasing whatever the failed step may have left held. */
  const giveUp = async (reason: string): Promise<ReservationState> => {
    log.error('reservation gave up', { workflowId, reason });
    state.status = 'failed';
    try {
      state.hold = await acts.releaseHold({ ...base(), status: 'released', ifActive: true });
      state.failure = `${reason}; anything it held was released`;
    } catch (err) {
      state.failure =
        (err as ApplicationFailure).type === 'HoldNotFound'
          ? `${reason}; nothing was held`
          : `${reason}; the hold sweeper releases anything held once ${state.expiresAt} has passed`;
    }
    await condition(allHandlersFinished);
    return state;
  };

  if (!input.resume) {
    let placed: PlaceResult;
    try {
      placed = await acts.placeHold({
        ...base(),
        workflowId,
        amount: input.amount,
        expiresAt: state.expiresAt,
        metadata: input.metadata,
      });
    } catch (err) {
      if (!fixedInputs) throw err;
      return giveUp(`placement failed: ${errorMessage(err)}`);
    }
    if (placed.outcome === 'rejected') {
      state.rejection = placed;
      state.status = 'rejected';
      return state;
    }
    state.hold = placed.hold;
    state.status = 'active';
  }

  // Durable TTL: if every worker is down when it passes, the timer fires when one comes back.
  while (state.status === 'active' && !continueDue()) {
    const deadline = state.expiresAt;
    const wait = Math.max(0, Date.parse(deadline) - Date.now());
    const woke = await condition(() => state.status !== 'active' || deadlineMoved || continueDue(), wait);
    deadlineMoved = false;
    if (woke) continue;
    if (!fixedInputs) {
      if (Date.now() < Date.parse(state.expiresAt)) continue;
      await mutex.run(async () => {
        if (state.status !== 'active') return;
        state.hold = await acts.releaseHold({ ...base(), status: 'expired', ifActive: true });
        state.status = 'expired';
      });
      continue;
    }
    // The ledger re-checks the deadline under the wallet lock: a committed extend always wins.
    let failed: string | null = null;
    await mutex.run(async () => {
      if (state.status !== 'active' || state.expiresAt !== deadline) return;
      try {
        const r = await acts.releaseHold({ ...base(), status: 'expired', ifActive: true, deadline });
        state.hold = r;
        if (!r.noop) state.status = 'expired';
        else if (r.status === 'active') state.expiresAt = r.expiresAt;
        else state.status = r.status;
      } catch (err) {
        failed = `TTL release failed: ${errorMessage(err)}`;
      }
    });
    if (failed) return giveUp(failed);
  }
  if (state.status === 'active') {
    // Continue as new between updates, carrying the live hold and the step counter (keys stay unique).
    await condition(allHandlersFinished);
    if (state.status === 'active') {
      await continueAsNew<typeof reservation>({
        ...input,
        resume: { step, hold: state.hold!, expiresAt: state.expiresAt },
      });
    }
  }
  await condition(allHandlersFinished);
  return state;
}
