import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Who asked for a credit movement, why, and in which request or workflow. Set around a call (the
 * API's key and request id, a route's reason, an activity's workflow id); the ledger core writes
 * it into the transaction's `requested_by` / `reason` / `request_id` / `workflow_id` through
 * transaction-local settings, and every log line written inside it carries `requestId`,
 * `workflowId` and `activityType` (lib/logger.ts).
 */
export interface Audit {
  requestedBy?: string;
  reason?: string;
  workflowId?: string;
  requestId?: string;
  /** Logs only: the activity running (the ledger has no column for it). */
  activityType?: string;
}

const store = new AsyncLocalStorage<Audit>();

/** Runs fn with `a` merged over the audit context it is called in (an undefined field keeps the outer one). */
export function withAudit<T>(a: Audit, fn: () => T): T {
  const defined = Object.fromEntries(Object.entries(a).filter(([, v]) => v !== undefined));
  return store.run({ ...store.getStore(), ...defined }, fn);
}

export const currentAudit = (): Audit | undefined => store.getStore();
