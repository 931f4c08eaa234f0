import { DomainError } from '../domain/errors';
import { getCustomer, insertCustomer, type CustomerRow } from '../db/customers';
import { withTransaction, type Pool } from '../db/pool';

export interface NewCustomer {
  id: string;
  name?: string;
  metadata?: Record<string, unknown>;
  overdraftLimit?: bigint;
}

/**
 * Creates a customer and its wallet. Creating the same id again with the same body is a no-op
 * that returns the customer (created: false); with a different body it is a CustomerConflict.
 */
export async function createCustomer(
  pool: Pool,
  c: NewCustomer,
  requestHash: string,
): Promise<{ customer: CustomerRow; created: boolean }> {
  return withTransaction(pool, async (tx) => {
    const created = await insertCustomer(tx, {
      id: c.id,
      name: c.name ?? null,
      metadata: c.metadata ?? {},
      overdraftLimit: c.overdraftLimit ?? 0n,
      requestHash,
    });
    const customer = await getCustomer(tx, c.id);
    if (!customer) throw new Error('customer vanished inside its own transaction');
    if (!created && customer.requestHash !== requestHash) {
      throw new DomainError('CustomerConflict', `customer ${c.id} already exists with different attributes`);
    }
    return { customer, created };
  });
}
