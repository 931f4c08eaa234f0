import { randomUUID } from 'node:crypto';
import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  type Client,
} from '@temporalio/client';
import { ApplicationFailure, defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { DomainError, type DomainErrorCode } from '../domain/errors';
import {
  creditsProblem,
  CUSTOMER_ID,
  deadlineProblem,
  HOLD_ID,
  reserveProblem,
  ttlProblem,
  type ReserveRequest,
} from '../domain/hold-requests';
import type { HoldView, PlaceResult, SettleResult } from '../ledger/holds';
import { DependencyUnavailable } from '../lib/unavailable';
import {
  captureUpdate,
  extendUpdate,
  placeUpdate,
  releaseUpdate,
  reservation,
  reservationWorkflowId,
  settleUpdate,
  statusQuery,
  type ReservationInput,
  type ReservationState,
} from '../workflows/reservation';

export const CustomerIdKey = defineSearchAttributeKey('CustomerId', SearchAttributeType.KEYWORD);

export type { HoldView, PlaceResult, SettleResult, ReservationInput, ReservationState, ReserveRequest };

export interface HoldsClientOptions {
  /** How long one call waits for Temporal and a worker before DependencyUnavailable (default 10 s). */
  timeoutMs?: number;
}

/**
 * Typed client for job schedulers: reserve, capture, extend, settle and release credits directly
 * through Temporal, with the same semantics as the HTTP API (which uses this very client).
 * `updateId`s make retries of the same call safe: Temporal answers a repeated update with its
 * first result. Requests are validated here, before anything reaches Temporal; deadlines are
 * fixed here (from ttlSeconds), so every retry inside the workflow books the same one. Every call
 * is bounded: Temporal away, or no worker to run the update → DependencyUnavailable, and a retry
 * with the same update id later returns the real outcome.
 */
export class HoldsClient {
  private readonly timeoutMs: number;

  constructor(
    private readonly client: Client,
    private readonly taskQueue: string,
    opts: HoldsClientOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Places the hold and returns once it is on the ledger (update-with-start), or its rejection. */
  async reserve(req: ReserveRequest): Promise<PlaceResult & { workflowId: string }> {
    invalidIf(reserveProblem(req));
    const input: ReservationInput = {
      ...req,
      expiresAt: req.expiresAt ?? new Date(Date.now() + req.ttlSeconds * 1000).toISOString(),
    };
    const workflowId = reservationWorkflowId(input.customerId, input.holdId);
    const start = new WithStartWorkflowOperation(reservation, {
      workflowId,
      taskQueue: this.taskQueue,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      // A finished hold's id is never reused for a new reservation.
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      typedSearchAttributes: [{ key: CustomerIdKey, value: input.customerId }],
    });
    try {
      // A fresh update id: on a finished reservation the start is then refused (REJECT_DUPLICATE)
      // instead of the server answering with the old placement's result.
      const r = await this.bounded(() =>
        this.client.workflow.executeUpdateWithStart(placeUpdate, {
          updateId: `place:${randomUUID()}`,
          startWorkflowOperation: start,
        }),
      );
      return { ...r, workflowId };
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new DomainError('HoldExists', `hold ${input.holdId} already exists and is finished`);
      }
      throw mapError(err);
    }
  }

  async capture(customerId: string, holdId: string, amount: string, updateId?: string): Promise<HoldView> {
    invalidIf(idsProblem(customerId, holdId) ?? creditsProblem(amount, 'amount'));
    return this.update(customerId, holdId, () =>
      this.handle(customerId, holdId).executeUpdate(captureUpdate, { args: [{ amount }], updateId }),
    );
  }

  async extend(
    customerId: string,
    holdId: string,
    o: { amount?: string; ttlSeconds?: number; expiresAt?: string },
    updateId?: string,
  ): Promise<HoldView> {
    invalidIf(
      idsProblem(customerId, holdId) ??
        (o.amount === undefined ? null : creditsProblem(o.amount, 'amount')) ??
        ttlProblem(o.ttlSeconds) ??
        (o.expiresAt === undefined ? null : deadlineProblem(o.expiresAt, 'expiresAt')),
    );
    const expiresAt =
      o.expiresAt ?? (o.ttlSeconds ? new Date(Date.now() + o.ttlSeconds * 1000).toISOString() : undefined);
    const args = { amount: o.amount, ttlSeconds: o.ttlSeconds, expiresAt };
    return this.update(customerId, holdId, () =>
      this.handle(customerId, holdId).executeUpdate(extendUpdate, { args: [args], updateId }),
    );
  }

  async settle(customerId: string, holdId: string, amount: string, updateId?: string): Promise<SettleResult> {
    invalidIf(idsProblem(customerId, holdId) ?? creditsProblem(amount, 'amount', { allowZero: true }));
    return this.update(customerId, holdId, () =>
      this.handle(customerId, holdId).executeUpdate(settleUpdate, { args: [{ amount }], updateId }),
    );
  }

  async release(customerId: string, holdId: string, updateId?: string): Promise<HoldView> {
    invalidIf(idsProblem(customerId, holdId));
    return this.update(customerId, holdId, () =>
      this.handle(customerId, holdId).executeUpdate(releaseUpdate, { updateId }),
    );
  }

  status(customerId: string, holdId: string): Promise<ReservationState> {
    return this.bounded(() => this.handle(customerId, holdId).query(statusQuery)).catch((err: unknown) => {
      throw mapError(err);
    });
  }

  /** The final state of a finished reservation (e.g. its recorded rejection), bounded like every call. */
  finished(customerId: string, holdId: string): Promise<ReservationState> {
    return this.bounded(() => this.handle(customerId, holdId).result()).catch((err: unknown) => {
      throw mapError(err);
    });
  }

  private handle(customerId: string, holdId: string) {
    return this.client.workflow.getHandle<typeof reservation>(reservationWorkflowId(customerId, holdId));
  }

  private bounded<T>(fn: () => Promise<T>): Promise<T> {
    return this.client.withDeadline(Date.now() + this.timeoutMs, fn);
  }

  private async update<T>(customerId: string, holdId: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await this.bounded(fn);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        // No running workflow: the hold is finished (or never existed); callers check the ledger.
        throw new DomainError('HoldNotActive', `hold ${holdId} of ${customerId} is not active`);
      }
      throw mapError(err);
    }
  }
}

function idsProblem(customerId: string, holdId: string): string | null {
  if (typeof customerId !== 'string' || !CUSTOMER_ID.test(customerId))
    return 'customerId: 1–128 characters of A-Za-z0-9_.:-';
  if (typeof holdId !== 'string' || !HOLD_ID.test(holdId)) return 'holdId: 1–128 characters of A-Za-z0-9_.- (no colon)';
  return null;
}

function invalidIf(problem: string | null): void {
  if (problem) throw new DomainError('InvalidRequest', problem);
}

const KNOWN: ReadonlySet<string> = new Set<DomainErrorCode>([
  'InsufficientCredits',
  'HoldNotActive',
  'HoldNotFound',
  'HoldExists',
  'HoldExpired',
  'AmountTooLarge',
  'InvalidRequest',
]);

/** gRPC codes that mean "not now": UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED. */
const NOT_NOW = new Set([14, 4, 1, 8]);

function grpcCode(err: unknown): number | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined, i = 0; e && i < 5; i++) {
    if (typeof e.code === 'number') return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}

/**
 * Update failures carry the activity's typed ApplicationFailure: turn it back into a DomainError.
 * Timeouts and an unreachable server become DependencyUnavailable (the gRPC status sits on `cause`).
 */
function mapError(err: unknown): unknown {
  if (err instanceof WorkflowUpdateFailedError || (err as { name?: string })?.name === 'WorkflowUpdateFailedError') {
    let cause: unknown = (err as { cause?: unknown }).cause;
    while (
      cause &&
      !(cause instanceof ApplicationFailure && cause.type && (KNOWN.has(cause.type) || cause.type === 'HoldFailed'))
    ) {
      cause = (cause as { cause?: unknown }).cause;
    }
    if (cause instanceof ApplicationFailure && cause.type === 'HoldFailed') {
      return new DependencyUnavailable('worker', `the reservation could not complete: ${cause.message}`);
    }
    if (cause instanceof ApplicationFailure) {
      const details = (cause.details?.[0] ?? {}) as Record<string, string>;
      return new DomainError(cause.type as DomainErrorCode, cause.message, details);
    }
    const message = (err as { cause?: { message?: string } }).cause?.message ?? 'update rejected';
    return new DomainError('InvalidRequest', message);
  }
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError) {
    return new DependencyUnavailable(
      'worker',
      'no worker completed the hold operation in time; retry with the same key',
    );
  }
  const code = grpcCode(err);
  if ((code !== undefined && NOT_NOW.has(code)) || /Failed to connect|deadline/i.test(String(err))) {
    return new DependencyUnavailable('temporal', 'Temporal did not answer in time; retry with the same key');
  }
  return err;
}
