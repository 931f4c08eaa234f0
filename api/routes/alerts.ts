import { Router } from 'express';
import { formatCredits } from '../../domain/amount';
import { customerNotFound } from '../../domain/errors';
import { getAlerts, setAlerts, type AlertSettings } from '../../db/alerts';
import { listNotifications, notificationBody } from '../../db/notifications';
import { withTransaction, type Pool } from '../../db/pool';
import { insertAuditEvent } from '../../db/audit-events';
import { allow, CUSTOMER_WRITE_ROLES, READ_ROLES } from '../auth';
import { problem } from '../problem';
import { AlertsBody, CustomerParams, NotificationQuery } from '../schemas';
import { body, decodeCursor, encodeCursor, params, query } from '../validate';

const ID = 'evt';
const INT8_MAX = 2n ** 63n - 1n;
const isId = (v: string) => /^[0-9]{1,19}$/.test(v) && BigInt(v) <= INT8_MAX;

/** `armed`: will fire on the next downward crossing; `fired`: went out, re-armed once available rises above. */
const view = (a: AlertSettings) => ({
  customerId: a.customerId,
  lowBalanceThresholds: a.thresholds.map(formatCredits),
  armed: a.thresholds.filter((t) => !a.fired.includes(t)).map(formatCredits),
  fired: a.thresholds.filter((t) => a.fired.includes(t)).map(formatCredits),
});

/** Low-balance thresholds per customer, and the outbox of notifications (API.md "Notifications and webhooks"). */
export function alertRoutes(deps: { pool: Pool }): Router {
  const r = Router();

  // A threshold the balance is already below fires at once (in this update): "you are low" is news.
  r.put('/customers/:id/alerts', allow(CUSTOMER_WRITE_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const b = body(AlertsBody, req);
    const a = await withTransaction(deps.pool, async (tx) => {
      const set = await setAlerts(tx, id, b.lowBalanceThresholds);
      if (set)
        await insertAuditEvent(tx, {
          action: 'customer.alerts_set',
          subject: `customer:${id}`,
          customerId: id,
          detail: { lowBalanceThresholds: set.thresholds.map(formatCredits) },
        });
      return set;
    });
    if (!a) throw customerNotFound(id);
    res.json(view(a));
  });

  r.get('/customers/:id/alerts', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const a = await getAlerts(deps.pool, id);
    if (!a) throw customerNotFound(id);
    res.json(view(a));
  });

  // Admin: every customer's; support: one customer's at a time (scoped keys: their own only).
  r.get('/notifications', allow(['support'], { scopedByHandler: true }), async (req, res) => {
    const q = query(NotificationQuery, req);
    const p = req.principal!;
    if (p.role !== 'admin' && !q.customerId) throw problem(403, `the ${p.role} role must name a customerId`);
    if (p.customerId !== null && q.customerId !== p.customerId)
      throw problem(403, 'this key is scoped to another customer');
    const beforeId = q.cursor ? BigInt(decodeCursor(ID, q.cursor, isId)) : undefined;
    const rows = await listNotifications(deps.pool, {
      customerId: q.customerId,
      type: q.type,
      beforeId,
      limit: q.limit + 1,
    });
    const page = rows.slice(0, q.limit);
    res.json({
      notifications: page.map(notificationBody),
      nextCursor: rows.length > q.limit ? encodeCursor(ID, page[page.length - 1]!.id.toString()) : null,
    });
  });

  return r;
}
