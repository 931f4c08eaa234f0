import { Router } from 'express';
import type { TopUpTrigger } from '../../client/topups';
import { formatCredits } from '../../domain/amount';
import { customerNotFound } from '../../domain/errors';
import { customerExists } from '../../db/customers';
import { pendingTopUp, topUpsBetween } from '../../db/payments';
import type { Pool } from '../../db/pool';
import { getRule, putRule, type TopUpRule } from '../../db/topup-rules';
import { topUpWorkflowId } from '../../ledger/payments';
import type { PaymentGateway } from '../../payments/gateway';
import { allow, GRANT_ROLES, READ_ROLES } from '../auth';
import { problem } from '../problem';
import { AutoTopUpBody, CustomerParams } from '../schemas';
import { body, params } from '../validate';
import { checkMethod } from './payments';

const DAY_MS = 86_400_000;

async function view(pool: Pool, rule: TopUpRule, now: Date) {
  const day = new Date(Math.floor(now.getTime() / DAY_MS) * DAY_MS);
  const inFlight = await pendingTopUp(pool, rule.customerId);
  const today = await topUpsBetween(pool, rule.customerId, day, new Date(day.getTime() + DAY_MS));
  const status = !rule.enabled
    ? 'disabled'
    : inFlight
      ? 'charging'
      : rule.cooldownUntil && rule.cooldownUntil > now
        ? 'cooldown'
        : 'idle';
  return {
    customerId: rule.customerId,
    enabled: rule.enabled,
    threshold: formatCredits(rule.threshold),
    mode: rule.mode,
    credits: formatCredits(rule.credits),
    unitPrice: { amountMinor: rule.unitPrice, currency: rule.currency },
    paymentMethod: rule.paymentMethod,
    cooldownSeconds: rule.cooldownSeconds,
    maxPerDay: rule.maxPerDay,
    maxAttempts: rule.maxAttempts,
    workflowId: topUpWorkflowId(rule.customerId),
    state: {
      status,
      lastTopUpAt: rule.lastTopUpAt?.toISOString() ?? null,
      consecutiveFailures: rule.consecutiveFailures,
      disabledReason: rule.disabledReason,
      inFlight: inFlight ? { topUpId: inFlight.id, credits: formatCredits(inFlight.credits) } : null,
      today: { count: today.count, credits: formatCredits(today.credits) },
    },
  };
}

export function topUpRoutes(deps: {
  pool: Pool;
  gateway: PaymentGateway;
  topUps?: TopUpTrigger;
  clock: () => Date;
}): Router {
  const r = Router();

  r.put('/customers/:id/auto-topup', allow(GRANT_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    const b = body(AutoTopUpBody, req);
    if (b.paymentMethod) checkMethod(deps.gateway, b.paymentMethod, 'body.paymentMethod');
    if (b.enabled && deps.gateway.name === 'manual')
      throw problem(422, 'the manual gateway cannot charge on its own: auto top-up needs stripe or sandbox');
    if (!(await customerExists(deps.pool, id))) throw customerNotFound(id);
    const rule = await putRule(deps.pool, id, {
      enabled: b.enabled,
      threshold: b.threshold,
      mode: b.mode,
      credits: b.credits,
      unitPrice: b.unitPrice.amountMinor,
      currency: b.unitPrice.currency,
      paymentMethod: b.paymentMethod ?? null,
      cooldownSeconds: b.cooldownSeconds,
      maxPerDay: b.maxPerDay,
      maxAttempts: b.maxAttempts,
    });
    // Already below the new threshold: start the workflow now, not at the next debit.
    if (rule.enabled) deps.topUps?.check([id]);
    res.json(await view(deps.pool, rule, deps.clock()));
  });

  r.get('/customers/:id/auto-topup', allow(READ_ROLES, { customerParam: 'id' }), async (req, res) => {
    const { id } = params(CustomerParams, req);
    if (!(await customerExists(deps.pool, id))) throw customerNotFound(id);
    const rule = await getRule(deps.pool, id);
    if (!rule) throw problem(404, `customer ${id} has no auto top-up rule`);
    res.json(await view(deps.pool, rule, deps.clock()));
  });

  return r;
}
