import { Router } from 'express';
import { customerNotFound } from '../../domain/errors';
import { formatDecimal, decimal } from '../../domain/decimal';
import { insertAuditEvent } from '../../db/audit-events';
import { customerExists } from '../../db/customers';
import type { Pool } from '../../db/pool';
import {
  customerRateCards,
  getRateCard,
  insertRateCardVersion,
  setCustomerRateCard,
  type RateCardRow,
  type StoredRule,
} from '../../db/rate-cards';
import { usageEventsForPreview } from '../../db/usage-reports';
import { withTransaction } from '../../db/pool';
import { preview } from '../../metering/preview';
import { toRateRule, type RateCardResolver } from '../../metering/rate-cards';
import { allow } from '../auth';
import { problem } from '../problem';
import {
  CustomerParams,
  CustomerRateCardBody,
  PreviewBody,
  RateCardBody,
  RateCardParams,
  RateCardQuery,
} from '../schemas';
import type { z } from '../zod';
import { body, params, query } from '../validate';

const PREVIEW_MAX_STORED_EVENTS = 100_000;

/** Normalises published rules: decimal strings in shortest form, per defaulting to 1. */
export function toStoredRules(rules: z.output<typeof RateCardBody>['rules']): StoredRule[] {
  return rules.map((r) => ({
    meter: r.meter,
    dimensions: r.dimensions ?? {},
    credits: formatDecimal(decimal(r.credits)),
    per: formatDecimal(decimal(String(r.per ?? '1'))),
  }));
}

/** The audit record of a published version (the API's and the CLI's). */
export const publishedEvent = (c: RateCardRow) => ({
  action: 'rate_card.published' as const,
  subject: `rate_card:${c.name}`,
  detail: { name: c.name, version: c.version, effectiveFrom: c.effectiveFrom.toISOString(), rules: c.rules.length },
});

const cardView = (c: RateCardRow) => ({
  name: c.name,
  version: c.version,
  effectiveFrom: c.effectiveFrom.toISOString(),
  createdAt: c.createdAt.toISOString(),
  rules: c.rules,
});

export function rateCardRoutes(deps: { pool: Pool; resolver: RateCardResolver; clock: () => Date }): Router {
  const r = Router();

  r.put('/rate-cards/:name', allow(['admin']), async (req, res) => {
    const { name } = params(RateCardParams, req);
    const b = body(RateCardBody, req);
    const card = await withTransaction(deps.pool, async (tx) => {
      const c = await insertRateCardVersion(tx, {
        name,
        effectiveFrom: b.effectiveFrom ?? deps.clock(),
        rules: toStoredRules(b.rules),
      });
      await insertAuditEvent(tx, publishedEvent(c));
      return c;
    });
    res.status(201).json(cardView(card));
  });

  r.get('/rate-cards/:name', allow(['service', 'support']), async (req, res) => {
    const { name } = params(RateCardParams, req);
    const { version } = query(RateCardQuery, req);
    const card = await getRateCard(deps.pool, name, version);
    if (!card) throw problem(404, `rate card ${name}${version ? ` version ${version}` : ''} does not exist`);
    res.json(cardView(card));
  });

  r.put('/customers/:id/rate-card', allow(['admin']), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const { name } = body(CustomerRateCardBody, req);
    if (!(await customerExists(deps.pool, id))) throw customerNotFound(id);
    if (!(await getRateCard(deps.pool, name))) throw problem(422, `rate card ${name} has no published version`);
    await withTransaction(deps.pool, async (tx) => {
      const previous = (await customerRateCards(tx, [id])).get(id) ?? null;
      await setCustomerRateCard(tx, id, name);
      await insertAuditEvent(tx, {
        action: 'customer.rate_card_assigned',
        subject: `customer:${id}`,
        customerId: id,
        detail: { name, previous },
      });
    });
    res.json({ customerId: id, name });
  });

  r.post('/rate-cards/preview', allow(['service', 'support']), async (req, res) => {
    const b = body(PreviewBody, req);
    const now = deps.clock();
    let events;
    if (b.events) {
      events = b.events.map((e) => ({
        meter: e.meter,
        quantity: e.quantity,
        dimensions: e.dimensions ?? {},
        occurredAt: e.timestamp ?? now,
      }));
    } else {
      const customerId = b.customerId!;
      if (!(await customerExists(deps.pool, customerId))) throw customerNotFound(customerId);
      const to = b.to ?? now;
      const from = b.from ?? new Date(to.getTime() - 30 * 86_400_000);
      events = await usageEventsForPreview(deps.pool, customerId, from, to, PREVIEW_MAX_STORED_EVENTS);
    }
    const draft = toStoredRules(b.draft.rules).map(toRateRule);
    res.json(await preview(deps.pool, deps.resolver, { draft, customerId: b.customerId, events, now }));
  });

  return r;
}
