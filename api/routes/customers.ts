import { Router } from 'express';
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
    const c = await getCustomer(pool, id);
    if (!c) throw customerNotFound(id);
    res.json(customerView(c));
  });

  r.get('/customers/:id/balance', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const b = await readBalance(pool, id, deps.clock());
    if (!b) throw customerNotFound(id);
    res.json(b.body);
  });

  r.get('/customers/:id/ledger', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const q = query(LedgerQuery, req);
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
    res.json({
      transactions: page.map((t) => ({
        id: t.id,
        type: t.type,
        createdAt: t.createdAt.toISOString(),
        reference: t.reference,
        idempotencyKey: t.idempotencyKey,
        requestedBy: t.requestedBy,
        reason: t.reason,
        workflowId: t.workflowId,
        entries: t.entries.map((e) => ({
          account: e.account,
          lotId: e.lotId,
          lotKind: e.lotKind,
          amount: formatCredits(e.amount),
        })),
      })),
      nextCursor: rows.length > q.limit ? encodeCursor(SEQ, page[page.length - 1]!.seq.toString()) : null,
    });
  });

  return r;
}
