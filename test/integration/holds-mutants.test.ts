import { credits, formatCredits, MAX_CREDITS_MICROS } from '../../domain/amount';
import { findViolations } from '../../db/invariants';
import { getCustomer } from '../../db/customers';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { HoldLedger } from '../../ledger/holds';
import { Ledger } from '../../ledger/ledger';
import { LifecycleLedger } from '../../ledger/lifecycle';
import { requestHash } from '../../lib/hash';
import { freshDatabase } from '../support/db';

/**
 * Hold movements the other ledger tests left open, found by mutation testing (`npm run mutation`):
 * each test fails on at least one mutant of ledger/holds.ts that survived them. Error messages and
 * details are asserted exactly because the API returns them to the caller.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
const T0 = new Date('2026-03-01T00:00:00Z');
let now = T0;
const at = (hours: number) => new Date(T0.getTime() + hours * 3_600_000);
let ledger: Ledger;
let holds: HoldLedger;
let seq = 0;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  ledger = new Ledger(pool, () => now);
  holds = new HoldLedger(ledger);
});
afterAll(async () => db.drop());
beforeEach(() => {
  now = T0;
});

const newCustomer = async (overdraftLimit = 0n) => {
  const id = `hm_${++seq}_${Math.random().toString(36).slice(2, 8)}`;
  await createCustomer(pool, { id, overdraftLimit }, requestHash({ id, overdraftLimit }));
  return id;
};
const cmd = (customerId: string, key: string) => ({ customerId, key: `${customerId}:${key}`, requestHash: key });
const wallet = async (id: string) => (await getCustomer(pool, id))!.wallet;
const expectNoViolations = async () => expect(await findViolations(pool)).toEqual([]);
const grant = async (c: string, key: string, amount: string, kind: 'purchased' | 'promotional' = 'purchased') =>
  (await ledger.grant(cmd(c, key), { amount: credits(amount), kind })).result.lot.id;
const place = async (c: string, holdId: string, amount: string, expiresAt = at(1)) =>
  (await holds.place(cmd(c, `place-${holdId}`), { holdId, workflowId: 'test', amount: credits(amount), expiresAt }))
    .result;
const lotBalances = async (id: string) => {
  const r = (await pool.query(`SELECT remaining, held, status FROM credit_lots WHERE id = $1`, [id])).rows[0];
  return { remaining: formatCredits(BigInt(r.remaining)), held: formatCredits(BigInt(r.held)), status: r.status };
};
/** What a refused movement could have written for one customer. */
const snapshot = async (c: string) =>
  (
    await pool.query(
      `SELECT (SELECT count(*) FROM ledger_transactions WHERE customer_id = $1) t,
              (SELECT json_agg(h ORDER BY id) FROM holds h WHERE customer_id = $1) holds,
              (SELECT json_agg(json_build_array(id, remaining, held, status) ORDER BY id) FROM credit_lots
                WHERE customer_id = $1) lots,
              (SELECT row_to_json(w) FROM wallets w WHERE customer_id = $1) wallet`,
      [c],
    )
  ).rows[0];

describe('hold errors carry their code, message and details', () => {
  it('a missing, finished, duplicate or expired hold', async () => {
    const c = await newCustomer();
    await grant(c, 'g', '10');
    await expect(holds.capture(cmd(c, 'c0'), { holdId: 'nope', amount: 1n })).rejects.toMatchObject({
      code: 'HoldNotFound',
      message: 'hold nope does not exist',
    });
    await place(c, 'h', '2');
    const before = await snapshot(c);
    await expect(
      holds.place(cmd(c, 'again'), { holdId: 'h', workflowId: 'test', amount: 1n, expiresAt: at(1) }),
    ).rejects.toMatchObject({ code: 'HoldExists', message: 'hold h already exists' });
    expect(await snapshot(c)).toEqual(before);

    await holds.release(cmd(c, 'r'), { holdId: 'h', status: 'released' });
    await expect(holds.capture(cmd(c, 'c1'), { holdId: 'h', amount: 1n })).rejects.toMatchObject({
      code: 'HoldNotActive',
      message: 'hold h is released',
      details: { holdStatus: 'released' },
    });

    await place(c, 'h2', '2', at(1));
    now = at(2);
    await expect(holds.capture(cmd(c, 'c2'), { holdId: 'h2', amount: 1n })).rejects.toMatchObject({
      code: 'HoldExpired',
      message: `hold h2 expired at ${at(1).toISOString()}`,
      details: { expiresAt: at(1).toISOString() },
    });
  });

  it('amounts a hold cannot take name what is wrong', async () => {
    const c = await newCustomer();
    await grant(c, 'g', '10');
    await place(c, 'h', '6');
    await expect(
      holds.place(cmd(c, 'big'), { holdId: 'big', workflowId: 't', amount: MAX_CREDITS_MICROS + 1n, expiresAt: at(1) }),
    ).rejects.toMatchObject({ code: 'AmountTooLarge', message: 'the hold would exceed 9,000,000,000,000 credits' });
    await expect(holds.capture(cmd(c, 'cap'), { holdId: 'h', amount: credits('7') })).rejects.toMatchObject({
      code: 'InvalidRequest',
      message: 'capture of 7 exceeds the 6 held; settle charges more',
    });
    await expect(holds.extend(cmd(c, 'ext'), { holdId: 'h', amount: credits('5') })).rejects.toMatchObject({
      code: 'InsufficientCredits',
      message: 'not enough credits to extend the hold',
      details: { shortfall: '1', available: '4' },
    });
    await expect(holds.settle(cmd(c, 'set'), { holdId: 'h', amount: MAX_CREDITS_MICROS + 1n })).rejects.toMatchObject({
      code: 'AmountTooLarge',
      message: 'the settled amount would exceed 9,000,000,000,000 credits',
    });

    const rich = await newCustomer(MAX_CREDITS_MICROS);
    await holds.place(cmd(rich, 'p'), { holdId: 'h', workflowId: 't', amount: MAX_CREDITS_MICROS, expiresAt: at(1) });
    await expect(holds.extend(cmd(rich, 'e'), { holdId: 'h', amount: 1n })).rejects.toMatchObject({
      code: 'AmountTooLarge',
      message: 'the hold would exceed 9,000,000,000,000 credits',
    });
  });

  it('a wallet in arrears is refused with its available credits: drawable lots minus the arrears', async () => {
    const c = await newCustomer();
    await ledger.debit(cmd(c, 'd'), { amount: credits('3') });
    expect(await place(c, 'h', '1')).toEqual({
      outcome: 'rejected',
      reason: 'arrears',
      available: '-3',
      shortfall: '1',
    });
  });
});

describe('hold movements', () => {
  it('each is one ledger transaction of its own type, referencing the hold', async () => {
    const c = await newCustomer();
    await grant(c, 'g', '10');
    await place(c, 'h', '2');
    await holds.capture(cmd(c, 'c'), { holdId: 'h', amount: credits('1') });
    await holds.extend(cmd(c, 'e'), { holdId: 'h', amount: credits('1') });
    await holds.settle(cmd(c, 's'), { holdId: 'h', amount: credits('2') });
    await place(c, 'h2', '1');
    await holds.release(cmd(c, 'r'), { holdId: 'h2', status: 'released' });
    const r = await pool.query(
      `SELECT type, reference FROM ledger_transactions WHERE customer_id = $1 AND type <> 'grant' ORDER BY created_at, id`,
      [c],
    );
    expect(r.rows.map((x: { type: string; reference: string }) => `${x.type} ${x.reference}`).sort()).toEqual([
      'hold_capture hold:h',
      'hold_extend hold:h',
      'hold_place hold:h',
      'hold_place hold:h2',
      'hold_release hold:h2',
      'hold_settle hold:h',
    ]);
  });

  it('extend never shortens a hold: an earlier expiresAt is ignored, a later one is taken', async () => {
    const c = await newCustomer();
    await grant(c, 'g', '10');
    await place(c, 'h', '2', at(2));
    const earlier = (await holds.extend(cmd(c, 'e1'), { holdId: 'h', expiresAt: at(1) })).result;
    expect(earlier.expiresAt).toBe(at(2).toISOString());
    const later = (await holds.extend(cmd(c, 'e2'), { holdId: 'h', expiresAt: at(3) })).result;
    expect(later.expiresAt).toBe(at(3).toISOString());
  });

  it('settle below what was captured is refused; settle at exactly that amount releases the rest', async () => {
    const c = await newCustomer();
    const l = await grant(c, 'g', '10');
    await place(c, 'h', '6');
    await holds.capture(cmd(c, 'c'), { holdId: 'h', amount: credits('4') });
    const before = await snapshot(c);
    await expect(holds.settle(cmd(c, 's1'), { holdId: 'h', amount: credits('3') })).rejects.toMatchObject({
      code: 'InvalidRequest',
      message: 'settle amount is below the 4 already captured',
    });
    expect(await snapshot(c)).toEqual(before);
    const s = (await holds.settle(cmd(c, 's2'), { holdId: 'h', amount: credits('4') })).result;
    expect(s).toMatchObject({ captured: '4', released: '2', overage: '0', hold: { status: 'settled', held: '0' } });
    expect(await wallet(c)).toMatchObject({ available: credits('6'), held: 0n, arrears: 0n });
    expect(await lotBalances(l)).toEqual({ remaining: '6', held: '0', status: 'active' });
    await expectNoViolations();
  });

  it('settle above the hold draws the overage from every drawable lot in consumption order', async () => {
    const c = await newCustomer();
    const paid = await grant(c, 'g1', '10', 'purchased'); // priority 30
    const promo = await grant(c, 'g2', '10', 'promotional'); // priority 10: drawn first
    await place(c, 'h', '4');
    const s = (await holds.settle(cmd(c, 's'), { holdId: 'h', amount: credits('20') })).result;
    expect(s).toMatchObject({ captured: '20', released: '0', overage: '16' });
    expect(await lotBalances(promo)).toEqual({ remaining: '0', held: '0', status: 'depleted' });
    expect(await lotBalances(paid)).toEqual({ remaining: '0', held: '0', status: 'depleted' });
    expect(await wallet(c)).toMatchObject({ available: 0n, held: 0n, arrears: 0n });
    const entries = await pool.query(
      `SELECT e.account, e.lot_id::text AS lot, e.amount::text FROM ledger_entries e
         JOIN ledger_transactions t ON t.id = e.transaction_id
        WHERE t.customer_id = $1 AND t.type = 'hold_settle' ORDER BY e.id`,
      [c],
    );
    expect(entries.rows).toEqual([
      { account: 'held', lot: promo, amount: '-4000000' },
      { account: 'consumed', lot: promo, amount: '4000000' },
      { account: 'available', lot: promo, amount: '-6000000' },
      { account: 'consumed', lot: promo, amount: '6000000' },
      { account: 'available', lot: paid, amount: '-10000000' },
      { account: 'consumed', lot: paid, amount: '10000000' },
    ]);
    await expectNoViolations();
  });

  it('settle above the hold and every lot: the rest of the overage becomes arrears', async () => {
    const c = await newCustomer();
    const l = await grant(c, 'g', '10');
    await place(c, 'h', '4');
    const s = (await holds.settle(cmd(c, 's'), { holdId: 'h', amount: credits('15') })).result;
    expect(s).toMatchObject({ captured: '15', released: '0', overage: '11' });
    expect(await lotBalances(l)).toEqual({ remaining: '0', held: '0', status: 'depleted' });
    expect(await wallet(c)).toMatchObject({ available: credits('-5'), held: 0n, arrears: credits('5') });
    await expectNoViolations();
  });
});

/** The entries of one customer's transactions of one type, in order. */
const entriesOf = async (c: string, type: string) =>
  (
    await pool.query<{ account: string; lot: string | null; amount: string }>(
      `SELECT e.account, e.lot_id::text AS lot, e.amount::text FROM ledger_entries e
         JOIN ledger_transactions t ON t.id = e.transaction_id
        WHERE t.customer_id = $1 AND t.type = $2 ORDER BY e.id`,
      [c, type],
    )
  ).rows;
const heldByLot = (lots: { lotId: string; held: string }[]) => Object.fromEntries(lots.map((l) => [l.lotId, l.held]));

describe('where released and captured credits go, lot by lot (ledger/movement.ts)', () => {
  it('release sends a voided lot’s held credits to voided, not back to available; the lot stays voided', async () => {
    const c = await newCustomer();
    const l = await grant(c, 'g', '10');
    await place(c, 'h', '4');
    await ledger.voidLot(cmd(c, 'v'), { lotId: l, reason: 'refund' });
    await holds.release(cmd(c, 'r'), { holdId: 'h', status: 'released' });
    expect(await lotBalances(l)).toEqual({ remaining: '0', held: '0', status: 'voided' });
    expect(await wallet(c)).toMatchObject({ available: 0n, held: 0n });
    expect(await entriesOf(c, 'hold_release')).toEqual([
      { account: 'held', lot: l, amount: '-4000000' },
      { account: 'voided', lot: l, amount: '4000000' },
    ]);
    await expectNoViolations();
  });

  it('release sends held credits of a lot at its expiresAt to expired, and those of a live lot back', async () => {
    const c = await newCustomer();
    const soon = (await ledger.grant(cmd(c, 'g1'), { amount: credits('10'), kind: 'purchased', expiresAt: at(5) }))
      .result.lot.id;
    const later = (await ledger.grant(cmd(c, 'g2'), { amount: credits('10'), kind: 'purchased', expiresAt: at(50) }))
      .result.lot.id;
    await place(c, 'h', '4', at(10)); // from the lot expiring first
    await place(c, 'h2', '13', at(10)); // the rest of it, then 7 of the later one
    now = at(5); // exactly the first lot's expiresAt: no longer drawable, so not given back
    await holds.release(cmd(c, 'r'), { holdId: 'h', status: 'released' });
    expect(await entriesOf(c, 'hold_release')).toEqual([
      { account: 'held', lot: soon, amount: '-4000000' },
      { account: 'expired', lot: soon, amount: '4000000' },
    ]);
    expect(await lotBalances(soon)).toMatchObject({ remaining: '0', held: '6' });
    await holds.release(cmd(c, 'r2'), { holdId: 'h2', status: 'released' });
    expect(await lotBalances(later)).toEqual({ remaining: '10', held: '0', status: 'active' });
    expect(await lotBalances(soon)).toMatchObject({ remaining: '0', held: '0' });
    expect(await wallet(c)).toMatchObject({ available: credits('10'), held: 0n });
    await expectNoViolations();
  });

  it('release gives nothing back to a lot the lifecycle booked as expired, even with the ledger’s clock behind', async () => {
    const c = await newCustomer();
    const l = (await ledger.grant(cmd(c, 'g'), { amount: credits('10'), kind: 'purchased', expiresAt: at(5) })).result
      .lot.id;
    await place(c, 'h', '4', at(10));
    now = at(4); // the lifecycle timer's asOf may run ahead of the ledger's clock
    await new LifecycleLedger(ledger, pool).tick(c, at(5));
    expect(await lotBalances(l)).toEqual({ remaining: '0', held: '4', status: 'expired' });
    await holds.release(cmd(c, 'r'), { holdId: 'h', status: 'released' });
    expect(await lotBalances(l)).toEqual({ remaining: '0', held: '0', status: 'expired' });
    expect(await wallet(c)).toMatchObject({ available: 0n, held: 0n });
    await expectNoViolations();
  });

  it('a lot whose credits are all held stays active; a drained one stays depleted through later movements', async () => {
    const c = await newCustomer();
    const promo = await grant(c, 'g1', '10', 'promotional');
    const paid = await grant(c, 'g2', '10', 'purchased');
    await place(c, 'h', '15'); // 10 of promo, 5 of paid
    expect(await lotBalances(promo)).toEqual({ remaining: '0', held: '10', status: 'active' });
    await holds.capture(cmd(c, 'c'), { holdId: 'h', amount: credits('10') });
    expect(await lotBalances(promo)).toEqual({ remaining: '0', held: '0', status: 'depleted' });
    await holds.release(cmd(c, 'r'), { holdId: 'h', status: 'released' });
    expect(await lotBalances(promo)).toEqual({ remaining: '0', held: '0', status: 'depleted' });
    expect(await lotBalances(paid)).toEqual({ remaining: '10', held: '0', status: 'active' });
    await expectNoViolations();
  });

  it('capture takes the hold’s lots in consumption order, not in the order it lists them', async () => {
    // The hold lists its lots by id: pick a fixture whose first-drawn lot has the larger id.
    let fixture: { c: string; first: string; second: string } | undefined;
    for (let i = 0; i < 40 && !fixture; i++) {
      const c = await newCustomer();
      const first = (await ledger.grant(cmd(c, 'g1'), { amount: credits('10'), kind: 'purchased', priority: 10 }))
        .result.lot.id;
      const second = (await ledger.grant(cmd(c, 'g2'), { amount: credits('10'), kind: 'purchased', priority: 20 }))
        .result.lot.id;
      if (first > second) fixture = { c, first, second };
    }
    const { c, first, second } = fixture!;
    expect(await place(c, 'h', '15')).toMatchObject({ outcome: 'placed', hold: { held: '15' } });
    const v = (await holds.capture(cmd(c, 'c'), { holdId: 'h', amount: credits('8') })).result;
    expect(heldByLot(v.lots)).toEqual({ [first]: '2', [second]: '5' });
    await expectNoViolations();
  });
});

describe('the wallet’s balances stay within ±9,000,000,000,000 credits (Movement.write)', () => {
  const MAX = MAX_CREDITS_MICROS;

  it('a wallet near the maximum can still place and release holds', async () => {
    const c = await newCustomer();
    await ledger.grant(cmd(c, 'g'), { amount: MAX - 5n, kind: 'purchased' });
    await holds.place(cmd(c, 'pa'), { holdId: 'a', workflowId: 't', amount: 10n, expiresAt: at(1) });
    await holds.place(cmd(c, 'pb'), { holdId: 'b', workflowId: 't', amount: MAX - 15n, expiresAt: at(1) });
    expect(await wallet(c)).toMatchObject({ available: 0n, held: MAX - 5n });
    await holds.release(cmd(c, 'rb'), { holdId: 'b', status: 'released' });
    expect(await wallet(c)).toMatchObject({ available: MAX - 15n, held: 10n });
    await expectNoViolations();
  });

  it('held credits past the maximum (all the lots plus the overdraft) are refused, naming them', async () => {
    const c = await newCustomer(10n);
    await ledger.grant(cmd(c, 'g'), { amount: MAX, kind: 'purchased' });
    await holds.place(cmd(c, 'pa'), { holdId: 'a', workflowId: 't', amount: MAX, expiresAt: at(1) });
    await expect(
      holds.place(cmd(c, 'pb'), { holdId: 'b', workflowId: 't', amount: 1n, expiresAt: at(1) }),
    ).rejects.toMatchObject({
      code: 'AmountTooLarge',
      message: "the wallet's held credits would exceed 9,000,000,000,000 credits",
    });
  });

  it('arrears past the maximum are refused, naming the arrears, or the available credits when both overflow', async () => {
    // Settling 1 µc above a hold, with MAX already owed and nothing drawable: arrears MAX + 1.
    const owingMax = async (futureCredits: string | null) => {
      const c = await newCustomer();
      await ledger.grant(cmd(c, 'g'), { amount: 10n, kind: 'purchased' });
      await holds.place(cmd(c, 'p'), { holdId: 'h', workflowId: 't', amount: 10n, expiresAt: at(1) });
      // Counted in available, not drawable: keeps available above -MAX while arrears pass MAX.
      if (futureCredits)
        await ledger.grant(cmd(c, 'f'), { amount: credits(futureCredits), kind: 'purchased', effectiveAt: at(24) });
      await ledger.debit(cmd(c, 'd'), { amount: MAX });
      return c;
    };
    const c = await owingMax('100');
    await expect(holds.settle(cmd(c, 's'), { holdId: 'h', amount: 11n })).rejects.toMatchObject({
      code: 'AmountTooLarge',
      message: "the wallet's arrears would exceed 9,000,000,000,000 credits",
    });
    const both = await owingMax(null);
    await expect(holds.settle(cmd(both, 's'), { holdId: 'h', amount: 11n })).rejects.toMatchObject({
      code: 'AmountTooLarge',
      message: "the wallet's available credits would exceed 9,000,000,000,000 credits",
    });
    await expectNoViolations();
  });
});
