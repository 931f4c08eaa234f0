import { ApplicationFailure } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import fc from 'fast-check';
import { createActivities, type Activities } from '../../activities';
import { credits as parseCredits, formatCredits } from '../../domain/amount';
import { DomainError } from '../../domain/errors';
import { findViolations, type Violation } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { insertRateCardVersion } from '../../db/rate-cards';
import { correctUsage } from '../../ledger/corrections';
import { createCustomer } from '../../ledger/customers';
import { HoldLedger } from '../../ledger/holds';
import { Ledger } from '../../ledger/ledger';
import type { ChargeDone, PaymentOrder } from '../../ledger/payments';
import { requestRefund, type ClawedBack } from '../../ledger/refunds';
import { requestHash } from '../../lib/hash';
import { composeKey } from '../../lib/ids';
import { ingestEvents } from '../../metering/ingest';
import { RateCardResolver } from '../../metering/rate-cards';
import { GatewayError, type PaymentGateway, type RefundRequest } from '../../payments/gateway';
import { SandboxGateway } from '../../payments/sandbox';
import { freshDatabase } from '../support/db';
import { ModelError, statusOf } from '../support/money-model';
import { RefundsModel, type GatewayAnswer } from '../support/refunds-model';

/**
 * Money out under random sequences, on real Postgres without Temporal: purchases through the
 * sandbox (pm_card_refundFails refuses refunds), free and hand-paid grants, debits, usage events,
 * holds, corrections of earlier events, and refund sagas driven step by step as workflows/refund.ts
 * runs them — steps re-run after a crash, runs stopped after the claw-back (cancelled or resumed
 * later), gateway replies down, lost after the money moved, or refused. After EVERY operation:
 * findViolations (invariants 1–5, 9) is empty; the model (test/support/refunds-model.ts) agrees on
 * every lot, wallet and refund; and, from the tables alone, money out per lot never exceeds the
 * cost of the credits it took back. Fixed seed; PROPS_SEED / PROPS_RUNS for a soak, PROPS_PATH to
 * replay a shrunk case, PROPS_SEEN=1 to print how often each path was reached.
 */
const CR = 1_000_000n;
const DAY = 86_400_000;
const BASE = Date.parse('2026-06-01T00:00:00Z');
const GATEWAY_ATTEMPTS = 8; // workflows/refund.ts: the gateway step's maximumAttempts
const RUNS = Number(process.env.PROPS_RUNS ?? 100);
/** Every step checks the whole database, which grows: shrinking a failure is cut short here. */
const TIME_LIMIT = Math.max(60_000, RUNS * 600);
/**
 * A refund of a lot is refused while another refund of that lot is clawed back and pending (the
 * cumulative money rule needs the earlier refund's final figures; see the tests at the end of
 * this file). The model does not predict that refusal, so the generator steers clear of it;
 * PROPS_KNOWN_BUGS=1 lets it through (the old bug's counterexamples then fail on the refusal).
 */
const AVOID = process.env.PROPS_KNOWN_BUGS !== '1';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let now = new Date(BASE);
let gateway: ProxiedSandbox;
let acts: Activities;
beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  gateway = new ProxiedSandbox(new SandboxGateway(pool));
  acts = createActivities({ pool, gateway, clock: () => now });
  const rules = [{ meter: 'units', dimensions: {}, credits: '1', per: '1' }];
  await insertRateCardVersion(pool, { name: 'default', effectiveFrom: new Date('2020-01-01T00:00:00Z'), rules });
});
afterAll(async () => db.drop());

/** The gateway's reply to one refund call: through; 503 before it got there; lost after the money moved. */
type Reply = 'ok' | 'down' | 'lost';
/** A step run once, or again after a crash past its commit (the first reply stands). */
type Fault = 'none' | 'repeat';

/** The sandbox behind a proxy that fails the next refund call as told. */
class ProxiedSandbox implements PaymentGateway {
  readonly name = 'sandbox' as const;
  next: Reply = 'ok';
  constructor(private readonly inner: SandboxGateway) {}
  findRefund(q: Parameters<PaymentGateway['findRefund']>[0]) {
    return this.inner.findRefund(q);
  }
  charge(req: Parameters<PaymentGateway['charge']>[0]) {
    return this.inner.charge(req);
  }
  findCharge(q: Parameters<PaymentGateway['findCharge']>[0]) {
    return this.inner.findCharge(q);
  }
  async refund(req: RefundRequest) {
    const reply = this.next;
    this.next = 'ok';
    if (reply === 'down') throw new GatewayError('retryable', 'api_connection_error', 'proxy: 503');
    const r = await this.inner.refund(req);
    if (reply === 'lost') throw new GatewayError('retryable', 'timeout', 'proxy: the reply was lost');
    return r;
  }
}

const arbC = fc.constantFrom(0, 0, 0, 1); // mostly one wallet: its lots, holds and refunds meet
/** Whole credits (lots and refunds come out even) or any µc amount (they rarely do). */
const arbCredits = (max: bigint) =>
  fc.oneof(
    fc.bigInt(1n, max).map((n) => n * CR),
    fc.bigInt(1n, max * CR),
  );
const arbFaults = fc.array(fc.constantFrom<Fault>('none', 'none', 'none', 'repeat'), { maxLength: 4 });
const arbReplies = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Reply[]>([]) },
  { weight: 3, arbitrary: fc.array(fc.constantFrom<Reply>('down', 'down', 'lost'), { minLength: 1, maxLength: 3 }) },
  // Every attempt fails: retries run out (a lost reply among them leaves the money refunded).
  { weight: 1, arbitrary: fc.array(fc.constantFrom<Reply>('down', 'down', 'lost'), { minLength: 8, maxLength: 8 }) },
);
const arbPurchase = (c: fc.Arbitrary<number>) =>
  fc.record({
    op: fc.constant('purchase' as const),
    c,
    credits: arbCredits(20n),
    amountMinor: fc.bigInt(1n, 5000n),
    method: fc.constantFrom('pm_card_visa', 'pm_card_visa', 'pm_card_refundFails'),
  });
const arbOp = fc.oneof(
  { weight: 5, arbitrary: arbPurchase(arbC) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('grant' as const),
      c: arbC,
      kind: fc.constantFrom('promotional' as const, 'paidByHand' as const, 'unpaid' as const),
      credits: arbCredits(20n),
      amountMinor: fc.bigInt(1n, 5000n),
    }),
  },
  // Large: they drive wallets into arrears.
  { weight: 2, arbitrary: fc.record({ op: fc.constant('debit' as const), c: arbC, amount: arbCredits(40n) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('usage' as const),
      c: arbC,
      events: fc.array(arbCredits(5n), { minLength: 1, maxLength: 3 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('place' as const), c: arbC, amount: arbCredits(8n) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom('capture' as const, 'settle' as const, 'release' as const),
      c: arbC,
      pick: fc.nat(),
      quarters: fc.integer({ min: 0, max: 4 }), // of what is held
      above: fc.boolean(), // settle: beyond the hold, by `extra`
      extra: arbCredits(5n),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant('refund' as const),
      c: arbC,
      pick: fc.nat(),
      lot: fc.constantFrom(
        'last' as const,
        'last' as const,
        'purchased' as const,
        'purchased' as const,
        'any' as const,
      ),
      ask: fc.constantFrom(
        'all' as const,
        'part' as const,
        'part' as const,
        'remaining' as const,
        'part' as const,
        'tooMuch' as const,
      ),
      quarters: fc.integer({ min: 1, max: 3 }),
      stop: fc.constantFrom('no' as const, 'no' as const, 'afterRequest' as const, 'afterClawBack' as const),
      faults: arbFaults,
      replies: arbReplies,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('resume' as const),
      pick: fc.nat(),
      cancel: fc.boolean(),
      faults: arbFaults,
      replies: arbReplies,
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('correct' as const), c: arbC, pick: fc.nat() }) },
);
type Op = typeof arbOp extends fc.Arbitrary<infer T> ? T : never;
/** Each wallet starts with a purchase: refunds have something to take from the first step on. */
const arbOps = fc
  .tuple(arbPurchase(fc.constant(0)), arbPurchase(fc.constant(1)), fc.array(arbOp, { maxLength: 28, size: 'max' }))
  .map(([a, b, rest]): Op[] => [a, b, ...rest]);

interface Cust {
  id: string;
  m: RefundsModel;
}

const quiet = new DefaultLogger('ERROR');
const chargeAt = (acts: Activities, order: PaymentOrder) =>
  new MockActivityEnvironment({ attempt: 1 }, { logger: quiet }).run<
    [PaymentOrder],
    ChargeDone,
    (o: PaymentOrder) => Promise<ChargeDone>
  >((o) => acts.chargePayment(o), order);
/** Another refund of the lot took its credits and has not ended (the second bug's precondition). */
const clawedAndPending = (c: Cust, lotId: string) =>
  [...c.m.refunds.values()].some((r) => r.lotId === lotId && r.status === 'pending' && r.clawed);
/** A purchase through the sandbox as workflows/purchase.ts runs it; its lot's id. */
async function buy(customerId: string, paymentId: string, credits: bigint, amountMinor: bigint, method: string) {
  const order: PaymentOrder = {
    customerId,
    paymentId,
    source: 'purchase',
    credits: formatCredits(credits),
    amountMinor: amountMinor.toString(),
    currency: 'USD',
    gateway: 'sandbox',
    paymentMethod: method,
    gatewayKey: composeKey('purchase', customerId, paymentId),
    maxAttempts: 1,
  };
  await acts.recordPurchase({ order, createdAt: now.toISOString(), requestHash: requestHash(order) });
  const charge = await chargeAt(acts, order);
  return (await acts.grantPayment({ order, charge, asOf: now.toISOString() })).lot.id;
}
const label = (v: Violation) => `${v.invariant} ${v.subject} ${v.detail}`;
const json = (v: unknown): unknown => (v === undefined ? v : JSON.parse(JSON.stringify(v)));
/** workflows/refund.ts's failureOf: the gateway's code, else the failure's type. */
const failureOf = (err: ApplicationFailure) => ({
  code: ((err.details?.[0] ?? {}) as { code?: string }).code ?? err.type ?? 'refund_failed',
  reason: err.message,
});
/** Runs `fn`; on a refusal, the error's code (a ModelError, DomainError or ApplicationFailure). */
async function attempt<T>(fn: () => T | Promise<T>): Promise<{ ok: T } | { refused: string }> {
  try {
    return { ok: await fn() };
  } catch (e) {
    if (e instanceof ModelError || e instanceof DomainError) return { refused: e.code };
    if (e instanceof ApplicationFailure && e.nonRetryable) return { refused: e.type ?? 'ApplicationFailure' };
    throw e;
  }
}

it(
  'refunds, corrections, holds and usage in any order: invariants 1–5 and 9 and the model hold after every step',
  async () => {
    const ledger = new Ledger(pool, () => now);
    const holds = new HoldLedger(ledger);
    const resolver = new RateCardResolver();
    const counts = new Map<string, number>();
    const seen = { add: (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1), has: (k: string) => counts.has(k) };
    let run = 0;
    let seq = 0;
    const key = (c: Cust, what: string) => ({ customerId: c.id, key: `${c.id}:${what}:${++seq}`, requestHash: what });

    /** A saga step, maybe re-run after a crash: the re-run must answer as the first did. */
    async function step<T>(fault: Fault, fn: () => Promise<T>): Promise<T> {
      const first = await fn();
      if (fault === 'repeat') {
        seen.add('step re-run');
        expect(json(await fn())).toEqual(json(first));
      }
      return first;
    }

    async function compensate(c: Cust, id: string, f: { code: string; reason: string }, faults: () => Fault) {
      await step(faults(), () => acts.compensateRefund({ refundId: id, ...f }));
      const r = c.m.refunds.get(id)!;
      if (r.status === 'pending') seen.add(`refund failed: ${f.code}${r.clawed ? '' : ' (nothing clawed back)'}`);
      if (r.paid !== null) seen.add('compensated after the money went back');
      const arrears = c.m.arrears;
      c.m.compensate(id);
      if (c.m.arrears < arrears) seen.add('compensation pays arrears');
    }

    /** workflows/refund.ts, one step at a time: claw back → gateway (retried) → record, or compensate. */
    async function saga(
      c: Cust,
      id: string,
      o: { faults: () => Fault; replies: Reply[]; stopAfterClawBack?: boolean; cancel?: boolean },
    ) {
      const want = await attempt(() => c.m.clawBack(id));
      const got = await attempt(() => step(o.faults(), () => acts.clawBackRefund({ refundId: id, customerId: c.id })));
      if ('refused' in got) {
        expect(got.refused).toBe('refused' in want ? want.refused : 'accepted');
        return compensate(c, id, { code: got.refused, reason: 'not refundable' }, o.faults);
      }
      if ('refused' in want) throw new Error(`claw-back accepted, model refuses: ${want.refused}`);
      const clawed: ClawedBack = got.ok;
      const lot = c.m.lot(c.m.refunds.get(id)!.lotId)!;
      const taking = [...c.m.refunds.values()].filter((o) => o.lotId === lot.id && o.clawed && o.status !== 'failed');
      if (taking.length > 1) seen.add('a later refund of the same lot');
      if (taking.length > 1 && taking.reduce((s, o) => s + o.clawed!.credits, 0n) === lot.original)
        seen.add('partial refunds take the whole lot');
      expect({ credits: parseCredits(clawed.credits), money: BigInt(clawed.moneyMinor) }).toEqual(want.ok);
      if (o.stopAfterClawBack) return seen.add('run stopped after the claw-back');
      if (o.cancel) return compensate(c, id, { code: 'cancelled', reason: 'the refund was cancelled' }, o.faults);

      let paid: { reference: string | null } | null = null;
      let failure = { code: 'refund_failed', reason: '' };
      const manual = clawed.gateway === 'manual';
      if (clawed.moneyMinor === '0') paid = { reference: null };
      const exhausts = o.replies.length >= GATEWAY_ATTEMPTS && !o.replies.includes('ok');
      const replies = o.replies;
      if (exhausts && replies.includes('lost')) seen.add('retries ran out after a lost reply');
      for (let n = 0; n < GATEWAY_ATTEMPTS && !paid; n++) {
        const reply = manual ? 'ok' : (replies[n] ?? 'ok');
        gateway.next = reply;
        const answer: GatewayAnswer = c.m.gateway(id, reply !== 'down');
        const expected = reply === 'lost' && answer === 'ok' ? 'retryable' : answer;
        try {
          const r = await acts.refundPayment(clawed);
          expect('ok').toBe(expected);
          if (o.faults() === 'repeat') {
            c.m.gateway(id, true);
            expect(await acts.refundPayment(clawed)).toEqual(r); // the same key: the same refund
          }
          paid = r;
          if (n > 0)
            seen.add(`gateway refund after ${replies.slice(0, n).includes('lost') ? 'a lost reply' : 'a 503'}`);
        } catch (err) {
          if (!(err instanceof ApplicationFailure)) throw err;
          expect(err.nonRetryable ? 'permanent' : 'retryable').toBe(expected);
          failure = failureOf(err);
          if (err.nonRetryable) break;
        }
      }
      if (!paid) {
        // As the workflow does: before compensating, ask the gateway for a refund under the key.
        const made = manual ? null : await acts.findRefundPayment(clawed);
        if (!made) return compensate(c, id, failure, o.faults);
        seen.add('refund found by its key after the retries ran out');
        paid = made;
      }
      const at = now.toISOString();
      await step(o.faults(), () => acts.recordRefund({ refundId: id, reference: paid.reference, at }));
      c.m.succeed(id);
      seen.add(`refund succeeded${manual ? ' (manual)' : ''}${clawed.moneyMinor === '0' ? ' (no money)' : ''}`);
    }

    async function refund(c: Cust, op: Extract<Op, { op: 'refund' }>, i: number, faults: () => Fault) {
      // The lot of the customer's last refund (refunds of one lot add up), a purchased one with
      // credits left, or any.
      const last = [...c.m.refunds.values()].pop();
      const purchased = c.m.lots.filter((l) => l.kind === 'purchased' && l.remaining > 0n);
      const lots = op.lot === 'any' || !purchased.length ? c.m.lots : purchased;
      const lot = op.lot === 'last' && last ? c.m.lot(last.lotId)! : lots[op.pick % Math.max(1, lots.length)];
      if (!lot) return;
      if (AVOID && clawedAndPending(c, lot.id)) return;
      const credits = {
        all: null,
        part: (lot.remaining * BigInt(op.quarters)) / 4n,
        remaining: lot.remaining,
        tooMuch: lot.remaining + 1n,
      }[op.ask];
      const ask = credits === 0n ? 1n : credits; // what the API accepts: none (all), or > 0
      const started: string[] = [];
      const start = (s: { refundId: string }) => (started.push(s.refundId), Promise.resolve(s.refundId));
      const request = {
        customerId: c.id,
        lotId: lot.id,
        ...(ask === null ? {} : { credits: ask }),
        reason: 'customer cancelled',
        requestedBy: 'props',
        idempotencyKey: `r${i}`,
        requestHash: requestHash({ lotId: lot.id, credits: ask?.toString() }),
      };
      const got = await attempt(() => requestRefund(pool, start, request, now));
      const id = 'ok' in got ? got.ok.id : '';
      const want = await attempt(() => c.m.request(id, lot.id, ask));
      expect('refused' in got ? got.refused : 'accepted').toBe('refused' in want ? want.refused : 'accepted');
      if ('refused' in got) return seen.add(`refund refused: ${lot.kind}`);
      expect(started).toEqual([id]);
      if (lot.held > 0n) seen.add('refund of a lot with held credits');
      if (op.stop === 'afterRequest') return seen.add('saga not started yet');
      await saga(c, id, { faults, replies: op.replies, stopAfterClawBack: op.stop === 'afterClawBack' });
    }

    async function purchase(c: Cust, op: Extract<Op, { op: 'purchase' }>, i: number) {
      const lotId = await buy(c.id, `pur_${i}`, op.credits, op.amountMinor, op.method);
      c.m.grant(lotId, { name: `L${i}`, kind: 'purchased', amount: op.credits, costMinor: op.amountMinor });
      c.m.charges.set(lotId, {
        costMinor: op.amountMinor,
        manual: false,
        refundFails: op.method === 'pm_card_refundFails',
        refunded: 0n,
      });
    }

    /** A ledger call and the model's, refused alike or accepted alike. */
    async function both<T>(real: () => Promise<T>, model: (r: T | undefined) => unknown) {
      const got = await attempt(real);
      const want = await attempt(() => model('ok' in got ? got.ok : undefined));
      expect('refused' in got ? got.refused : 'accepted').toBe('refused' in want ? want.refused : 'accepted');
      return got;
    }

    async function apply(cs: Cust[], op: Op, i: number) {
      const queue = 'faults' in op ? [...op.faults] : [];
      const faults = () => queue.shift() ?? 'none';
      if (op.op === 'resume') {
        const pending = cs.flatMap((c) =>
          [...c.m.refunds.values()].filter((r) => r.status === 'pending').map((r) => ({ c, r })),
        );
        const p = pending[op.pick % Math.max(1, pending.length)];
        if (!p || (AVOID && !p.r.clawed && clawedAndPending(p.c, p.r.lotId))) return;
        seen.add(
          `resumed ${p.r.clawed ? 'after the claw-back' : 'before the claw-back'}${op.cancel ? ', cancelled' : ''}`,
        );
        // A new run (the sweeper's) starts from the claw-back, which replays what the first run took.
        return saga(p.c, p.r.id, { faults, replies: op.replies, cancel: op.cancel });
      }
      const c = cs[op.c]!;
      const m = c.m;
      switch (op.op) {
        case 'purchase':
          return purchase(c, op, i);
        case 'grant': {
          const paid = op.kind === 'paidByHand';
          const input = {
            amount: op.credits,
            kind: op.kind === 'promotional' ? ('promotional' as const) : ('purchased' as const),
            ...(paid ? { cost: { amountMinor: op.amountMinor, currency: 'USD' }, paymentReference: `inv-${i}` } : {}),
          };
          const g = await ledger.grant(key(c, 'grant'), input);
          const costMinor = paid ? op.amountMinor : 0n;
          m.grant(g.result.lot.id, { name: `L${i}`, kind: input.kind, amount: op.credits, costMinor });
          if (paid) m.charges.set(g.result.lot.id, { costMinor, manual: true, refundFails: false, refunded: 0n });
          return;
        }
        case 'debit':
          await ledger.debit(key(c, 'debit'), { amount: op.amount });
          m.debit(op.amount);
          return;
        case 'usage': {
          const events = op.events.map((credits, k) => ({ id: `e${i}.${k}`, credits }));
          const raw = events.map((e) => ({
            id: e.id,
            customerId: c.id,
            meter: 'units',
            quantity: formatCredits(e.credits),
          }));
          const res = await ingestEvents(ledger, resolver, raw, now);
          expect(res.map((r) => r.status)).toEqual(events.map(() => 'accepted'));
          return m.usage(res[0]!.transactionId!, events);
        }
        case 'correct': {
          const ids = [...m.events.keys(), 'no-such-event'];
          const eventId = ids[op.pick % ids.length]!;
          const arrears = m.arrears;
          const got = await both(
            () => correctUsage(ledger, key(c, 'correct'), { eventId, reason: 'billed twice', requestedBy: 'props' }),
            (r) => m.correct(eventId, () => r?.result.adjustmentLotId),
          );
          if ('ok' in got) {
            const r = got.ok.result;
            if (r.restored.length) seen.add('correction back to lots');
            if (m.arrears < arrears) seen.add('correction reduces arrears');
            if (r.adjustmentLotId) seen.add('correction into an adjustment lot');
          }
          return;
        }
        case 'place': {
          const holdId = `h${i}`;
          const expiresAt = new Date(now.getTime() + DAY);
          await both(
            async () => {
              const r = await holds.place(key(c, 'place'), {
                holdId,
                workflowId: `wf-${holdId}`,
                amount: op.amount,
                expiresAt,
              });
              return r.result.outcome;
            },
            (outcome) => expect(outcome).toBe(m.place(holdId, op.amount, expiresAt.getTime()).outcome),
          );
          if (!m.holds.get(holdId)) return;
          return seen.add('hold placed');
        }
        case 'capture':
        case 'settle':
        case 'release': {
          const ids = [...m.holds.keys()];
          const h = ids.length ? m.holds.get(ids[op.pick % ids.length]!)! : undefined;
          if (!h) return;
          const part = (h.held * BigInt(op.quarters)) / 4n;
          if (op.op === 'capture') {
            const amount = part > 0n ? part : 1n;
            await both(
              () => holds.capture(key(c, 'capture'), { holdId: h.id, amount }),
              () => m.capture(h.id, amount),
            );
          } else if (op.op === 'settle') {
            const amount = h.captured + (op.above ? h.held + op.extra : part);
            await both(
              () => holds.settle(key(c, 'settle'), { holdId: h.id, amount }),
              () => m.settle(h.id, amount),
            );
            if (op.above) seen.add('settle above the hold');
          } else
            await both(
              () => holds.release(key(c, 'release'), { holdId: h.id, status: 'released' }),
              () => m.release(h.id, 'released'),
            );
          return;
        }
        case 'refund':
          return refund(c, op, i, faults);
      }
    }

    /** The database against the model, and money out against money in from the tables alone. */
    async function expectAgrees(cs: Cust[]) {
      const ids = cs.map((c) => c.id);
      const lots = await pool.query<{
        customer_id: string;
        id: string;
        remaining: string;
        held: string;
        status: string;
      }>(
        `SELECT customer_id, id::text, remaining::text, held::text, status FROM credit_lots WHERE customer_id = ANY($1)`,
        [ids],
      );
      const wallets = await pool.query<{ customer_id: string; available: string; held: string; arrears: string }>(
        `SELECT customer_id, available::text, held::text, arrears::text FROM wallets WHERE customer_id = ANY($1)`,
        [ids],
      );
      const refunds = await pool.query<{ id: string; lot_id: string; status: string; credits: string; money: string }>(
        `SELECT id, lot_id::text, status, credits_clawed_back::text AS credits, money_minor::text AS money
         FROM refunds WHERE customer_id = ANY($1)`,
        [ids],
      );
      const charges = await pool.query<{ lot_id: string; refunded: string }>(
        `SELECT l.id::text AS lot_id, s.refunded_minor::text AS refunded
         FROM credit_lots l JOIN sandbox_charges s ON s.id = l.payment_reference WHERE l.customer_id = ANY($1)`,
        [ids],
      );
      const sorted = <T>(xs: T[]) => xs.map((x) => JSON.stringify(x)).sort();
      for (const c of cs) {
        const m = c.m;
        const w = m.wallet();
        expect(wallets.rows.find((r) => r.customer_id === c.id)).toEqual({
          customer_id: c.id,
          available: w.available.toString(),
          held: w.held.toString(),
          arrears: w.arrears.toString(),
        });
        expect(sorted(lots.rows.filter((r) => r.customer_id === c.id))).toEqual(
          sorted(
            m.lots.map((l) => ({
              customer_id: c.id,
              id: l.id,
              remaining: l.remaining.toString(),
              held: l.held.toString(),
              status: statusOf(l),
            })),
          ),
        );
        for (const r of m.refunds.values())
          expect(refunds.rows.find((x) => x.id === r.id)).toEqual({
            id: r.id,
            lot_id: r.lotId,
            status: r.status,
            credits: (r.clawed?.credits ?? 0n).toString(),
            money: (r.clawed?.money ?? 0n).toString(),
          });
        for (const [lotId, ch] of m.charges)
          if (charges.rows.some((x) => x.lot_id === lotId))
            expect({ lotId, refunded: charges.rows.find((x) => x.lot_id === lotId)!.refunded }).toEqual({
              lotId,
              refunded: ch.refunded.toString(),
            });
      }
      expect(refunds.rows.length).toBe(cs.reduce((s, c) => s + c.m.refunds.size, 0));
      expect(await moneyOutProblems(pool, ids)).toEqual([]);
    }

    await fc.assert(
      fc.asyncProperty(arbOps, async (ops) => {
        run++;
        now = new Date(BASE);
        const before = new Set((await findViolations(pool)).map(label));
        let step = 0;
        const cs: Cust[] = [];
        for (const k of [0, 1]) {
          const id = `rp-${run}-${k}`;
          await createCustomer(pool, { id }, requestHash({ id }));
          cs.push({ id, m: new RefundsModel(0n, now.getTime()) });
        }
        const check = async (what: string) => {
          // the reconciliation's cross-check at the run's last step only (it costs as much as the rest)
          const last = ++step > ops.length;
          const fresh = (await findViolations(pool, { reconciliation: last })).filter((v) => !before.has(label(v)));
          if (fresh.length) throw new Error(`after ${what}: ${fresh.map(label).join('\n')}`);
          await expectAgrees(cs);
        };
        for (const [i, op] of ops.entries()) {
          now = new Date(BASE + (i + 1) * 1000); // distinct effectiveAt: consumption order never ties on ids
          for (const c of cs) c.m.now = now.getTime();
          await apply(cs, op, i);
          await check(`op ${i} ${op.op}`);
        }
        // Every refund ends: sagas left pending run again to completion.
        for (const c of cs)
          for (const r of c.m.refunds.values())
            if (r.status === 'pending') await saga(c, r.id, { faults: () => 'none', replies: [] });
        await check('finishing the pending refunds');
        expect(await outcomesOf(pool, cs)).toEqual(
          cs
            .flatMap((c) =>
              [...c.m.refunds.values()].map(
                (r) => `${r.id} ${r.clawed ? 1 : 0} ${r.status === 'failed' && r.clawed ? 1 : 0} refund.${r.status}`,
              ),
            )
            .sort(),
        );
      }),
      {
        seed: Number(process.env.PROPS_SEED ?? 11_011),
        path: process.env.PROPS_PATH,
        numRuns: RUNS,
        plugins: [fc.interruptAfterTimeLimit(TIME_LIMIT, { failOnInterrupt: true })],
      },
    );
    // The generator reached the paths that matter (else the property proves little).
    const wanted = [
      'refund succeeded',
      'refund succeeded (manual)',
      'refund failed: refund_failed',
      'refund failed: cancelled',
      'refund failed: NotRefundable (nothing clawed back)',
      'refund refused: promotional',
      'refund of a lot with held credits',
      'a later refund of the same lot',
      'partial refunds take the whole lot',
      'run stopped after the claw-back',
      'resumed after the claw-back',
      'resumed before the claw-back',
      'compensation pays arrears',
      'step re-run',
      'gateway refund after a 503',
      'gateway refund after a lost reply',
      'correction back to lots',
      'correction reduces arrears',
      'correction into an adjustment lot',
      'settle above the hold',
    ];
    if (process.env.PROPS_SEEN)
      console.log(
        [...counts]
          .sort()
          .map(([k, v]) => `${v} ${k}`)
          .join('\n'),
      );
    expect(wanted.filter((w) => !seen.has(w))).toEqual([]);
  },
  TIME_LIMIT + 30_000,
);

/**
 * Per finished refund, from the ledger and the outbox: its claw-back and compensation
 * transactions (at most one each) and its one outcome notification.
 */
async function outcomesOf(pool: Pool, cs: Cust[]): Promise<string[]> {
  const r = await pool.query<{ id: string; clawbacks: number; compensations: number; outcomes: string }>(
    `SELECT r.id,
            (SELECT count(*)::int FROM ledger_transactions t WHERE t.customer_id = r.customer_id
               AND t.type = 'refund_clawback' AND t.reference = r.workflow_id) AS clawbacks,
            (SELECT count(*)::int FROM ledger_transactions t WHERE t.customer_id = r.customer_id
               AND t.type = 'refund_compensation' AND t.reference = r.workflow_id) AS compensations,
            (SELECT string_agg(type, ',') FROM outbox_events o WHERE o.customer_id = r.customer_id
               AND o.type LIKE 'refund.%' AND o.payload->>'refundId' = r.id) AS outcomes
       FROM refunds r WHERE r.customer_id = ANY($1)`,
    [cs.map((c) => c.id)],
  );
  return r.rows.map((x) => `${x.id} ${x.clawbacks} ${x.compensations} ${x.outcomes}`).sort();
}

/**
 * Invariant 9 for money out, from the tables alone: per lot, the money of its refunds that took
 * credits and did not fail is never negative and never exceeds the cost of those credits
 * (floor(cost × credits / original)), and is the whole cost once they took all its credits; a
 * failed refund (its credits restored) has no gateway refund.
 */
async function moneyOutProblems(pool: Pool, customerIds: string[]): Promise<string[]> {
  const r = await pool.query<{ problem: string }>(
    `SELECT format('lot %s (cost %s for %s): refunds %s take %s credits for %s', l.id, l.cost_amount_minor,
                   l.original, x.n, x.credits, x.money) AS problem
       FROM credit_lots l
       JOIN (SELECT lot_id, count(*) AS n, sum(credits_clawed_back) AS credits, sum(money_minor) AS money,
                    min(money_minor) AS least
               FROM refunds WHERE status <> 'failed' AND clawed_back_at IS NOT NULL GROUP BY lot_id) x
         ON x.lot_id = l.id
      WHERE l.customer_id = ANY($1)
                AND (x.least < 0 OR x.credits > l.original OR x.money > l.cost_amount_minor * x.credits / l.original
             OR (x.credits = l.original AND x.money <> l.cost_amount_minor)
             OR l.remaining < 0 OR l.remaining + l.held > l.original)
     UNION ALL
     SELECT format('refund %s failed (credits restored) but the gateway refunded %s', r.id, s.amount_minor)
       FROM refunds r JOIN sandbox_refunds s ON s.idempotency_key = r.id
      WHERE r.customer_id = ANY($1) AND r.status = 'failed'`,
    [customerIds],
  );
  return r.rows.map((x) => x.problem);
}

/**
 * The two production bugs the property found, as minimal counterexamples, run the way
 * workflows/refund.ts runs the saga now (they failed before the fixes).
 */
describe('money out: minimal counterexamples (regressions)', () => {
  async function customerWithLot(id: string, credits: bigint, amountMinor: bigint) {
    now = new Date(BASE);
    await createCustomer(pool, { id }, requestHash({ id }));
    return buy(id, 'p1', credits, amountMinor, 'pm_card_visa');
  }
  async function ask(customerId: string, lotId: string, credits: bigint, key: string) {
    const r = { customerId, lotId, credits, reason: 'cancelled', requestedBy: 'props', idempotencyKey: key };
    return (await requestRefund(pool, () => Promise.resolve(''), { ...r, requestHash: key }, now)).id;
  }

  // Before: the saga compensated when the gateway step's retries ran out, without asking the
  // gateway whether a refund existed under the refund's key: money and credits both came back.
  it('retries that run out after a lost reply: the refund is found by its key, the credits stay out', async () => {
    const c = 'bug-lost-reply';
    const lotId = await customerWithLot(c, 10n * CR, 1000n);
    const id = await ask(c, lotId, 10n * CR, 'k1');
    const clawed = await acts.clawBackRefund({ refundId: id, customerId: c });
    for (let n = 0; n < GATEWAY_ATTEMPTS; n++) {
      gateway.next = n === 0 ? 'lost' : 'down'; // the refund is made, its reply lost; then 503s
      const last = await acts.refundPayment(clawed).then(
        () => undefined,
        (e: ApplicationFailure) => e,
      );
      expect(last?.nonRetryable).toBe(false);
    }
    const made = await acts.findRefundPayment(clawed);
    expect(made).not.toBeNull();
    await acts.recordRefund({ refundId: id, reference: made!.reference, at: now.toISOString() });
    expect(await moneyOutProblems(pool, [c])).toEqual([]);
  });

  // Before: moneyFor counted a pending refund of the lot as "earlier"; when it failed later, the
  // refund computed against it kept its rounding (51 for 1 of 2 credits that cost 101).
  it('a refund of a lot whose earlier refund is still pending is refused; after it ends, it computes on final figures', async () => {
    const c = 'bug-cumulative';
    const lotId = await customerWithLot(c, 2n * CR, 101n); // 50.5 per credit
    const first = await ask(c, lotId, CR, 'k1');
    expect((await acts.clawBackRefund({ refundId: first, customerId: c })).moneyMinor).toBe('50');
    await expect(ask(c, lotId, CR, 'k2')).rejects.toMatchObject({ code: 'NotRefundable' });
    await acts.compensateRefund({ refundId: first, code: 'cancelled', reason: 'the refund was cancelled' });
    const second = await ask(c, lotId, CR, 'k3');
    const clawed = await acts.clawBackRefund({ refundId: second, customerId: c });
    expect(clawed.moneyMinor).toBe('50'); // floor(101 × 1 / 2): the failed first counts nothing
    const paid = await acts.refundPayment(clawed);
    await acts.recordRefund({ refundId: second, reference: paid.reference, at: now.toISOString() });
    expect(await moneyOutProblems(pool, [c])).toEqual([]);
  });
});
