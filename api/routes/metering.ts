import { Router } from 'express';
import { formatCredits } from '../../domain/amount';
import { customerNotFound } from '../../domain/errors';
import { customerExists } from '../../db/customers';
import type { Pool } from '../../db/pool';
import { usageReport } from '../../db/usage-reports';
import type { Ledger } from '../../ledger/ledger';
import { authorize } from '../../metering/authorize';
import { IngestBatcher } from '../../metering/batcher';
import type { TopUpTrigger } from '../../client/topups';
import { ingestEvents } from '../../metering/ingest';
import type { RateCardResolver } from '../../metering/rate-cards';
import { allow, READ_ROLES } from '../auth';
import { problem } from '../problem';
import { AuthorizeBody, CustomerParams, EventsBody, UsageQuery } from '../schemas';
import { body, params, query } from '../validate';

const DAY = 86_400_000;

export function meteringRoutes(deps: {
  pool: Pool;
  ledger: Ledger;
  resolver: RateCardResolver;
  clock: () => Date;
  topUps?: TopUpTrigger;
}): Router {
  const r = Router();
  const batcher = new IngestBatcher((events, now) => ingestEvents(deps.ledger, deps.resolver, events, now), deps.clock);

  r.post('/events', allow(['service'], { scopedByHandler: true }), async (req, res) => {
    const { events } = body(EventsBody, req);
    // A customer-scoped key may only send that customer's events: others are rejected one by one.
    const results = await batcher.submit(events, req.principal!.customerId);
    res.json({ results });
    // After the commit: wallets these events left below their top-up threshold get their workflow.
    if (deps.topUps) {
      const debited = new Set(
        events.filter((_, i) => results[i]?.status === 'accepted').map((e) => (e as { customerId: string }).customerId),
      );
      deps.topUps.check(debited);
    }
  });

  r.post('/customers/:id/authorize', allow(['service'], { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const { amount } = body(AuthorizeBody, req);
    res.json({
      customerId: id,
      amount: formatCredits(amount),
      ...(await authorize(deps.pool, id, amount, deps.clock())),
    });
  });

  r.get('/customers/:id/usage', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const q = query(UsageQuery, req);
    const to = q.to ?? deps.clock();
    const from = q.from ?? new Date(to.getTime() - 30 * DAY);
    if (from >= to)
      throw problem(400, 'from must be before to', { errors: [{ path: 'query.from', message: 'must be before to' }] });
    const groupBy = [...new Set((q.groupBy ?? 'meter').split(','))];
    if (!(await customerExists(deps.pool, id))) throw customerNotFound(id);
    const rows = await usageReport(deps.pool, id, { from, to, groupBy });
    const total = rows.reduce((s, row) => s + row.credits, 0n);
    const corrected = rows.reduce((s, row) => s + row.corrected, 0n);
    res.json({
      customerId: id,
      from: from.toISOString(),
      to: to.toISOString(),
      groupBy,
      rows: rows.map((row) => ({
        ...(row.meter !== undefined ? { meter: row.meter } : {}),
        ...(row.day !== undefined ? { day: row.day } : {}),
        ...row.dimensions,
        quantity: row.quantity,
        credits: formatCredits(row.credits),
        correctedCredits: formatCredits(row.corrected),
        events: row.events,
      })),
      total: formatCredits(total),
      correctedTotal: formatCredits(corrected),
    });
  });

  return r;
}
