import { defineQuery, setHandler } from '@temporalio/workflow';
import type { PaymentOrder } from '../ledger/payments';
import { pay, paymentSteps, type PaymentOutcome } from './payment';

/** `purchase:<customerId>:<purchaseId>`: record, charge (retries, one key), grant. */
export interface PurchaseInput {
  order: PaymentOrder;
  /** When the API accepted it (the row's createdAt): fixed, so a retried first step writes the same row. */
  createdAt: string;
  requestHash: string;
}

export const purchaseStatusQuery = defineQuery<{ status: string; outcome: PaymentOutcome | null }>('status');

export async function purchase(input: PurchaseInput): Promise<PaymentOutcome> {
  let status = 'recording';
  let outcome: PaymentOutcome | null = null;
  setHandler(purchaseStatusQuery, () => ({ status, outcome }));
  await paymentSteps.recordPurchase(input);
  status = 'charging';
  outcome = await pay(input.order);
  status = outcome.status;
  return outcome;
}
