import { Router } from 'express';
import { listAuditEvents } from '../../db/audit-events';
import type { Pool } from '../../db/pool';
import { allow } from '../auth';
import { AuditEventQuery } from '../schemas';
import { decodeCursor, encodeCursor, query } from '../validate';

const ID = 'audit';
const INT8_MAX = 2n ** 63n - 1n;
const isId = (v: string) => /^[0-9]{1,19}$/.test(v) && BigInt(v) <= INT8_MAX;

/** The audit trail of actions that move no credits (admin only); credit movements: the ledger listing. */
export function auditRoutes(deps: { pool: Pool }): Router {
  const r = Router();

  r.get('/audit-events', allow([]), async (req, res) => {
    const q = query(AuditEventQuery, req);
    const beforeId = q.cursor ? BigInt(decodeCursor(ID, q.cursor, isId)) : undefined;
    const rows = await listAuditEvents(deps.pool, {
      customerId: q.customerId,
      action: q.action,
      beforeId,
      limit: q.limit + 1,
    });
    const page = rows.slice(0, q.limit);
    res.json({
      events: page.map((e) => ({
        id: e.id.toString(),
        action: e.action,
        subject: e.subject,
        customerId: e.customerId,
        requestedBy: e.requestedBy,
        detail: e.detail,
        createdAt: e.createdAt.toISOString(),
      })),
      nextCursor: rows.length > q.limit ? encodeCursor(ID, page[page.length - 1]!.id.toString()) : null,
    });
  });

  return r;
}
