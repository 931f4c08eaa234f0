import { randomUUID } from 'node:crypto';
import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { ApplicationFailure, defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { DomainError, type DomainErrorCode } from '../domain/errors';
import type { HoldView, PlaceResult, SettleResult } from '../ledger/holds';
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

export type { HoldView, PlaceResult, SettleResult, ReservationInput, ReservationState };

/**
 * Typed client for job schedulers: reserve, capture, extend, settle and release credits directly
 * through Temporal, with the same semantics as the HTTP API (which uses this very client).
 * `updateId`s make retries of the same call safe: Temporal answers a repeated update with its
 * first result.
 */
export class HoldsClient {
  constructor(
    private readonly client: Client,
    private readonly taskQueue: string,
  ) {}

  /** Places the hold and returns once it is on the ledger (update-with-start), or its rejection. */
  async reserve(input: ReservationInput): Promise<PlaceResult & { workflowId: string }> {
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
      const r = await this.client.workflow.executeUpdateWithStart(placeUpdate, {
        updateId: `place:${randomUUID()}`,
        startWorkflowOperation: start,
      });
      return { ...r, workflowId };
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new DomainError('HoldExists', `hold ${input.holdId} already exists and is finished`);
      }
      throw mapError(err);
    }
  }

  capture(customerId: string, holdId: string, amount: string, updateId?: string): Promise<HoldView> {
    return this.update(customerId, holdId, () =>
      this.handle(customerId, holdId).executeUpdate(captureUpdate, { args: [{ amount }], updateId }),
    );
  }

  extend(
    customerId: string,
    holdId: string,
    o: { amount?: string; ttlSeconds?: number },
    updateId?: string,
  ): Promise<HoldView> {
    return this.update(customerId, holdId, () =>
      this.handle(customerId, holdId).executeUpdate(extendUpdate, { args: [o], updateId }),
    );
  }

  settle(customerId: string, holdId: string, amount: string, updateId?: string): Promise<SettleResult> {
    return this.update(customerId, holdId, () =>
      this.handle(customerId, holdId).executeUpdate(settleUpdate, { args: [{ amount }], updateId }),
    );
  }

  release(customerId: string, holdId: string, updateId?: string): Promise<HoldView> {
    return this.update(customerId, holdId, () =>
      this.handle(customerId, holdId).executeUpdate(releaseUpdate, { updateId }),
    );
  }

  status(customerId: string, holdId: string): Promise<ReservationState> {
    return this.handle(customerId, holdId).query(statusQuery);
  }

  private handle(customerId: string, holdId: string) {
    return this.client.workflow.getHandle<typeof reservation>(reservationWorkflowId(customerId, holdId));
  }

  private async update<T>(customerId: string, holdId: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        // No running workflow: the hold is finished (or never existed); callers check the ledger.
        throw new DomainError('HoldNotActive', `hold ${holdId} of ${customerId} is not active`);
      }
      throw mapError(err);
    }
  }
}

const KNOWN: ReadonlySet<string> = new Set<DomainErrorCode>([
  'InsufficientCredits',
  'HoldNotActive',
  'HoldNotFound',
  'HoldExists',
  'InvalidRequest',
]);

/** Update failures carry the activity's typed ApplicationFailure: turn it back into a DomainError. */
function mapError(err: unknown): unknown {
  if (err instanceof WorkflowUpdateFailedError || (err as { name?: string })?.name === 'WorkflowUpdateFailedError') {
    let cause: unknown = (err as { cause?: unknown }).cause;
    while (cause && !(cause instanceof ApplicationFailure && cause.type && KNOWN.has(cause.type))) {
      cause = (cause as { cause?: unknown }).cause;
    }
    if (cause instanceof ApplicationFailure) {
      const details = (cause.details?.[0] ?? {}) as Record<string, string>;
      return new DomainError(cause.type as DomainErrorCode, cause.message, details);
    }
    const message = (err as { cause?: { message?: string } }).cause?.message ?? 'update rejected';
    return new DomainError('InvalidRequest', message);
  }
  return err;
}
