import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import { purchaseWorkflowId } from '../ledger/payments';
import { DependencyUnavailable, isUnavailable } from '../lib/unavailable';
import type { PaymentOutcome } from '../workflows/payment';
import { purchase, type PurchaseInput } from '../workflows/purchase';
import { refund, type RefundInput } from '../workflows/refund';
import { refundWorkflowId } from '../ledger/refunds';
import { CustomerIdKey } from './holds';

export type PurchaseAnswer = { kind: 'done'; outcome: PaymentOutcome } | { kind: 'pending' };

/**
 * Starts a purchase's workflow (or finds the one already started for it: a retried request) and
 * waits a bounded time for its outcome; past that the purchase is pending and the workflow
 * finishes it. Temporal away → DependencyUnavailable (503), nothing charged.
 */
export class PaymentsClient {
  constructor(
    private readonly client: Client,
    private readonly taskQueue: string,
    private readonly opts: { searchAttributes?: boolean; startTimeoutMs?: number } = {},
  ) {}

  refund(input: RefundInput): Promise<string> {
    return startRefund(this.client, this.taskQueue, input, this.opts);
  }

  async purchase(input: PurchaseInput, waitMs = 10_000): Promise<PurchaseAnswer> {
    const { customerId, paymentId } = input.order;
    const workflowId = purchaseWorkflowId(customerId, paymentId);
    try {
      await this.client.withDeadline(Date.now() + (this.opts.startTimeoutMs ?? 5000), () =>
        this.client.workflow.start(purchase, {
          workflowId,
          taskQueue: this.taskQueue,
          args: [input],
          workflowIdConflictPolicy: 'USE_EXISTING',
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
          ...(this.opts.searchAttributes === false
            ? {}
            : { typedSearchAttributes: [{ key: CustomerIdKey, value: customerId }] }),
        }),
      );
    } catch (err) {
      // Already started and finished: a retry of a purchase whose reply was lost; read its result.
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw unavailable(err);
    }
    try {
      const outcome = await this.client.withDeadline(Date.now() + waitMs, () =>
        this.client.workflow.getHandle<typeof purchase>(workflowId).result(),
      );
      return { kind: 'done', outcome };
    } catch {
      return { kind: 'pending' }; // not yet (or the wait failed): the workflow carries on
    }
  }
}

/** Starts a refund's saga (`refund:<refundId>`); a retry finds the one already started. */
export async function startRefund(
  client: Client,
  taskQueue: string,
  input: RefundInput,
  opts: { searchAttributes?: boolean; timeoutMs?: number } = {},
): Promise<string> {
  const workflowId = refundWorkflowId(input.refundId);
  try {
    await client.withDeadline(Date.now() + (opts.timeoutMs ?? 5000), () =>
      client.workflow.start(refund, {
        workflowId,
        taskQueue,
        args: [input],
        workflowIdConflictPolicy: 'USE_EXISTING',
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        ...(opts.searchAttributes === false
          ? {}
          : { typedSearchAttributes: [{ key: CustomerIdKey, value: input.customerId }] }),
      }),
    );
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw unavailable(err);
  }
  return workflowId;
}

function unavailable(err: unknown): unknown {
  return isUnavailable(err) || /deadline|Failed to connect/i.test(String(err))
    ? new DependencyUnavailable('temporal', 'Temporal did not answer; retry with the same Idempotency-Key')
    : err;
}
