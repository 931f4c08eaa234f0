import { Router } from 'express';
import type { z } from 'zod';
import { formatCredits } from '../../domain/amount';
import { customerNotFound } from '../../domain/errors';
import { getCustomer, type CustomerRow } from '../../db/customers';
import { listTransactions } from '../../db/ledger-queries';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { requestHash } from '../../lib/hash';
import { readBalance } from '../balance';
import { allow, CUSTOMER_WRITE_ROLES, READ_ROLES } from '../auth';
import { CreateCustomerBody, CustomerParams, LedgerQuery } from '../schemas';
import { body, decodeCursor, encodeCursor, params, query } from '../validate';

export function customerView(c: CustomerRow) {
  return {
    id: c.id,
    name: c.name,
    metadata: c.metadata,
    createdAt: c.createdAt.toISOString(),
    wallet: {
      available: formatCredits(c.wallet.available),
      held: formatCredits(c.wallet.held),
      arrears: formatCredits(c.wallet.arrears),
      overdraftLimit: formatCredits(c.wallet.overdraftLimit),
      status: c.wallet.status,
      version: c.wallet.version.toString(),
    },
  };
}

const INT8_MAX = 2n ** 63n - 1n;
const SEQ = 'seq';
const isSeq = (v: string) => /^[0-9]{1,19}$/.test(v) && BigInt(v) <= INT8_MAX;

/** The customer (404 if none), as GET /v1/customers/:id and the CLI show it. */
export async function customerOf(pool: Pool, id: string) {
  const c = await getCustomer(pool, id);
  if (!c) throw customerNotFound(id);
  return customerView(c);
}

/** Balances, open lots in consumption order and the next expiry (GET …/balance, the CLI). */
export async function balanceView(pool: Pool, id: string, now: Date) {
  const b = await readBalance(pool, id, now);
  if (!b) throw customerNotFound(id);
  return b.body;
}

/** One page of the customer's ledger transactions, newest first (GET …/ledger, the CLI). */
export async function ledgerPage(pool: Pool, id: string, q: z.infer<typeof LedgerQuery>) {
  const beforeSeq = q.cursor ? BigInt(decodeCursor(SEQ, q.cursor, isSeq)) : undefined;
  if (!(await getCustomer(pool, id))) throw customerNotFound(id);
  const rows = await listTransactions(pool, id, {
    type: q.type,
    from: q.from,
    to: q.to,
    beforeSeq,
    limit: q.limit + 1,
  });
  const page = rows.slice(0, q.limit);
  return {
    transactions: page.map((t) => ({
      id: t.id,
      type: t.type,
      createdAt: t.createdAt.toISOString(),
      reference: t.reference,
      idempotencyKey: t.idempotencyKey,
      requestedBy: t.requestedBy,
      reason: t.reason,
      workflowId: t.workflowId,
      requestId: t.requestId,
      entries: t.entries.map((e) => ({
        account: e.account,
        lotId: e.lotId,
        lotKind: e.lotKind,
        amount: formatCredits(e.amount),
      })),
    })),
    nextCursor: rows.length > q.limit ? encodeCursor(SEQ, page[page.length - 1]!.seq.toString()) : null,
  };
}

export function customerRoutes(deps: { pool: Pool; clock: () => Date }): Router {
  const r = Router();
  const { pool } = deps;

  r.post('/customers', allow(CUSTOMER_WRITE_ROLES), async (req, res) => {
    const b = body(CreateCustomerBody, req);
    const { customer, created } = await createCustomer(pool, b, requestHash(req.body));
    res.status(created ? 201 : 200).json(customerView(customer));
  });

  r.get('/customers/:id', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    res.json(await customerOf(pool, id));
  });

  r.get('/customers/:id/balance', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    res.json(await balanceView(pool, id, deps.clock()));
  });

  r.get('/customers/:id/ledger', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    res.json(await ledgerPage(pool, id, query(LedgerQuery, req)));
  });

  return r;
}
