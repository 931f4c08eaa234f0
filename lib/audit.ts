import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Who asked for a credit movement, why, and for which workflow. Set around a call (the API's
 * key, a route's reason, an activity's workflow id); the ledger core writes it into the
 * transaction's `requested_by` / `reason` / `workflow_id` through transaction-local settings.
 */
export interface Audit {
  requestedBy?: string;
  reason?: string;
  workflowId?: string;
}

const store = new AsyncLocalStorage<Audit>();

/** Runs fn with `a` merged over the audit context it is called in (an undefined field keeps the outer one). */
export function withAudit<T>(a: Audit, fn: () => T): T {
  const defined = Object.fromEntries(Object.entries(a).filter(([, v]) => v !== undefined));
  return store.run({ ...store.getStore(), ...defined }, fn);
}

export const currentAudit = (): Audit | undefined => store.getStore();
