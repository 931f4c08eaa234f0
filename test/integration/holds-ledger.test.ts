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

/** Holds and arrears on real Postgres, with the ledger's clock injected. */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
const T0 = new Date('2026-03-01T00:00:00Z');
let now = T0;
const HOUR = 3_600_000;
const at = (hours: number) => new Date(T0.getTime() + hours * HOUR);
let ledger: Ledger;
let holds: HoldLedger;
let lifecycle: LifecycleLedger;
let seq = 0;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  ledger = new Ledger(pool, () => now);
  holds = new HoldLedger(ledger);
  lifecycle = new LifecycleLedger(ledger, pool);
});
afterAll(async () => db.drop());
beforeEach(() => {
  now = T0;
});

const newCustomer = async (overdraftLimit = 0n) => {
  const id = `hl_${++seq}_${Math.random().toString(36).slice(2, 8)}`;
  await createCustomer(pool, { id, overdraftLimit }, requestHash({ id, overdraftLimit }));
  return id;
};
const cmd = (customerId: string, key: string) => ({ customerId, key: `${customerId}:${key}`, requestHash: key });
const wallet = async (id: string) => (await getCustomer(pool, id))!.wallet;
const expectNoViolations = async () => expect(await findViolations(pool)).toEqual([]);
/** Everything a movement could write for one customer. */
const snapshot = async (c: string) => {
  const r = await pool.query(
    `SELECT (SELECT count(*) FROM ledger_transactions WHERE customer_id = $1) t,
            (SELECT count(*) FROM idempotency_keys WHERE key LIKE $1 || ':%') k,
            (SELECT json_agg(h ORDER BY id) FROM holds h WHERE customer_id = $1) holds,
            (SELECT json_agg(l ORDER BY hold_id, lot_id) FROM hold_lots l WHERE customer_id = $1) hold_lots,
            (SELECT json_agg(json_build_array(id, remaining, held, status) ORDER BY id) FROM credit_lots
              WHERE customer_id = $1) lots,
            (SELECT row_to_json(w) FROM wallets w WHERE customer_id = $1) wallet`,
    [c],
  );
  return r.rows[0];
};
const entriesOf = async (c: string, type: string) =>
  (
    await pool.query<{ account: string; lot: string | null; amount: string }>(
      `SELECT e.account, e.lot_id::text AS lot, e.amount::text FROM ledger_entries e
         JOIN ledger_transactions t ON t.id = e.transaction_id
        WHERE t.customer_id = $1 AND t.type = $2 ORDER BY e.id`,
      [c, type],
    )
  ).rows;
/** A lot's balances in credits. */
const lot = async (id: string) => {
  const r = (await pool.query(`SELECT remaining, held, status FROM credit_lots WHERE id = $1`, [id])).rows[0];
  return { remaining: formatCredits(BigInt(r.remaining)), held: formatCredits(BigInt(r.held)), status: r.status };
};

const grant = async (c: string, key: string, amount: string, extra: Record<string, unknown> = {}) =>
  (await ledger.grant(cmd(c, key), { amount: credits(amount), kind: 'purchased', ...extra })).result.lot;
const place = async (c: string, holdId: string, amount: string, expiresAt = at(1)) =>
  (await holds.place(cmd(c, `place-${holdId}`), { holdId, workflowId: 'test', amount: credits(amount), expiresAt }))
    .result;

describe('the ledger decides a hold’s expiry', () => {
  it('capture, extend and settle at or after expiresAt are HoldExpired and write nothing', async () => {
    const c = await newCustomer();
    await grant(c, 'g', '10');
    await place(c, 'h', '6', at(1));
    for (const t of [at(1), at(5)]) {
      now = t;
      const before = await snapshot(c);
      await expect(holds.capture(cmd(c, `cap${+t}`), { holdId: 'h', amount: credits('1') })).rejects.toMatchObject({
        code: 'HoldExpired',
      });
      await expect(
        holds.extend(cmd(c, `ext${+t}`), { holdId: 'h', amount: credits('1'), expiresAt: at(10) }),
      ).rejects.toMatchObject({ code: 'HoldExpired' });
      await expect(holds.settle(cmd(c, `set${+t}`), { holdId: 'h', amount: credits('2') })).rejects.toMatchObject({
        code: 'HoldExpired',
      });
      expect(await snapshot(c)).toEqual(before);
    }
    now = new Date(at(1).getTime() - 1); // a millisecond before: still live
    const v = (await holds.capture(cmd(c, 'cap-live'), { holdId: 'h', amount: credits('1') })).result;
    expect(v).toMatchObject({ status: 'active', captured: '1', held: '5' });
    await expectNoViolations();
  });

  it('a TTL release with a stale deadline (an extend moved it) is a no-op; with the current one it expires once', async () => {
    const c = await newCustomer();
    await grant(c, 'g', '10');
    await place(c, 'h', '6', at(1));
    await holds.extend(cmd(c, 'ext'), { holdId: 'h', expiresAt: at(3) });
    const before = await snapshot(c);
    const stale = await holds.release(cmd(c, 'ttl-1'), {
      holdId: 'h',
      status: 'expired',
      ifActive: true,
      deadline: at(1),
    });
    expect(stale.result).toMatchObject({ noop: true, status: 'active', held: '6', expiresAt: at(3).toISOString() });
    const after = await snapshot(c);
    expect({ ...after, k: before.k }).toEqual(before); // only the idempotency record is new
    expect(Number(after.k)).toBe(Number(before.k) + 1);
    expect(await wallet(c)).toMatchObject({ available: credits('4'), held: credits('6') });
    // A retry of the same step replays the no-op.
    const replay = await holds.release(cmd(c, 'ttl-1'), {
      holdId: 'h',
      status: 'expired',
      ifActive: true,
      deadline: at(1),
    });
    expect(replay).toMatchObject({ replayed: true, result: { noop: true } });

    const due = await holds.release(cmd(c, 'ttl-2'), {
      holdId: 'h',
      status: 'expired',
      ifActive: true,
      deadline: at(3),
    });
    expect(due.result.noop).toBeUndefined();
    expect(due.result).toMatchObject({ status: 'expired', held: '0', released: '6' });
    expect(await wallet(c)).toMatchObject({ available: credits('10'), held: 0n });
    const again = await holds.release(cmd(c, 'ttl-3'), { holdId: 'h', status: 'expired', deadline: at(3) });
    expect(again.result).toMatchObject({ noop: true, status: 'expired' });
    expect(await entriesOf(c, 'hold_release')).toHaveLength(2); // one release: held → available, once
    await expectNoViolations();
  });

  it('without a deadline release keeps its semantics: a finished hold is HoldNotActive, or a no-op with ifActive', async () => {
    const c = await newCustomer();
    await grant(c, 'g', '10');
    await place(c, 'h', '6');
    await holds.release(cmd(c, 'r1'), { holdId: 'h', status: 'released' });
    await expect(holds.release(cmd(c, 'r2'), { holdId: 'h', status: 'released' })).rejects.toMatchObject({
      code: 'HoldNotActive',
    });
    expect(
      (await holds.release(cmd(c, 'r3'), { holdId: 'h', status: 'expired', ifActive: true })).result,
    ).toMatchObject({
      noop: true,
      status: 'released',
    });
  });

  it('an extend racing a TTL release: the hold is either extended and kept, or expired and the extend refused', async () => {
    const c = await newCustomer();
    await grant(c, 'g', '100');
    for (let i = 0; i < 10; i++) {
      await place(c, `race${i}`, '5', at(1));
      const [ext, ttl] = await Promise.allSettled([
        holds.extend(cmd(c, `race${i}-ext`), { holdId: `race${i}`, expiresAt: at(2) }),
        holds.release(cmd(c, `race${i}-ttl`), {
          holdId: `race${i}`,
          status: 'expired',
          ifActive: true,
          deadline: at(1),
        }),
      ]);
      expect(ttl.status).toBe('fulfilled');
      const released = ttl.status === 'fulfilled' && !ttl.value.result.noop;
      if (released) expect(ext).toMatchObject({ status: 'rejected', reason: { code: 'HoldNotActive' } });
      else expect(ext.status).toBe('fulfilled');
      const row = await pool.query(`SELECT status, expires_at FROM holds WHERE customer_id = $1 AND id = $2`, [
        c,
        `race${i}`,
      ]);
      expect(row.rows[0].status).toBe(released ? 'expired' : 'active');
    }
    await expectNoViolations();
  });
});

describe('arrears are paid from credits that become drawable again', () => {
  /** 10 granted, 8 held, a debit of 5 → 2 drawn, 3 in arrears. */
  const owing = async () => {
    const c = await newCustomer();
    const l = await grant(c, 'g', '10');
    await place(c, 'h', '8');
    const d = await ledger.debit(cmd(c, 'd'), { amount: credits('5') });
    expect(d.result.arrears).toBe('3');
    expect(await wallet(c)).toMatchObject({ available: credits('-3'), held: credits('8'), arrears: credits('3') });
    return { c, lotId: l.id };
  };

  it('releasing a hold pays them in the same transaction', async () => {
    const { c, lotId } = await owing();
    await holds.release(cmd(c, 'r'), { holdId: 'h', status: 'released' });
    expect(await wallet(c)).toMatchObject({ available: credits('5'), held: 0n, arrears: 0n });
    expect(await lot(lotId)).toEqual({ remaining: '5', held: '0', status: 'active' });
    expect(await entriesOf(c, 'hold_release')).toEqual([
      { account: 'held', lot: lotId, amount: '-8000000' },
      { account: 'available', lot: lotId, amount: '8000000' },
      { account: 'available', lot: lotId, amount: '-3000000' },
      { account: 'available', lot: null, amount: '3000000' },
    ]);
    await expectNoViolations();
  });

  it('a TTL expiry pays them too', async () => {
    const { c } = await owing();
    await holds.release(cmd(c, 'ttl'), { holdId: 'h', status: 'expired', ifActive: true, deadline: at(1) });
    expect(await wallet(c)).toMatchObject({ available: credits('5'), arrears: 0n });
    await expectNoViolations();
  });

  it('settle pays them from what it releases', async () => {
    const { c, lotId } = await owing();
    const s = await holds.settle(cmd(c, 's'), { holdId: 'h', amount: credits('2') });
    expect(s.result).toMatchObject({ captured: '2', released: '6' });
    expect(await wallet(c)).toMatchObject({ available: credits('3'), held: 0n, arrears: 0n });
    expect(await lot(lotId)).toEqual({ remaining: '3', held: '0', status: 'active' });
    await expectNoViolations();
  });

  it('a future-dated lot reaching effectiveAt pays them on the lifecycle tick, once', async () => {
    const c = await newCustomer();
    const future = await grant(c, 'g', '10', { effectiveAt: at(24) });
    await ledger.debit(cmd(c, 'd'), { amount: credits('4') });
    expect(await wallet(c)).toMatchObject({ arrears: credits('4') });
    const early = await lifecycle.tick(c, at(1));
    expect(early.booked).toEqual([]);
    expect(early.upcoming).toContainEqual({ at: at(24).toISOString(), kind: 'effective', lotId: future.id });
    now = at(25);
    const due = await lifecycle.tick(c, at(25));
    expect(due.booked).toEqual([{ lotId: future.id, action: 'arrears-paid', expired: '0', arrearsPaid: '4' }]);
    expect(await wallet(c)).toMatchObject({ available: credits('6'), arrears: 0n });
    expect(await lot(future.id)).toEqual({ remaining: '6', held: '0', status: 'active' });
    expect(await entriesOf(c, 'arrears_payment')).toEqual([
      { account: 'available', lot: future.id, amount: '-4000000' },
      { account: 'available', lot: null, amount: '4000000' },
    ]);
    const before = await snapshot(c);
    expect((await lifecycle.tick(c, at(26))).booked).toEqual([]);
    expect(await snapshot(c)).toEqual(before);
    await expectNoViolations();
  });

  it('a grant pays them in consumption order, from a drawable lot before the new one', async () => {
    const c = await newCustomer();
    const promo = await grant(c, 'g1', '10', { kind: 'promotional', effectiveAt: at(1) });
    await ledger.debit(cmd(c, 'd'), { amount: credits('4') });
    now = at(2); // the promo lot is drawable now, no tick has run
    const paid = await grant(c, 'g2', '100');
    expect(paid.remaining).toBe('100');
    expect(await lot(promo.id)).toMatchObject({ remaining: '6' });
    expect(await wallet(c)).toMatchObject({ available: credits('106'), arrears: 0n });
    await expectNoViolations();
  });

  it('a renewal pays them from the new period', async () => {
    const c = await newCustomer();
    await ledger.grant(cmd(c, 'a'), { amount: credits('10'), kind: 'allowance', recurrence: { every: 'week' } });
    await ledger.debit(cmd(c, 'd'), { amount: credits('15') });
    now = at(24 * 7);
    const r = await lifecycle.tick(c, now);
    expect(r.booked).toEqual([expect.objectContaining({ action: 'renewed', arrearsPaid: '5' })]);
    expect(await lot(r.booked[0]!.renewalLotId!)).toMatchObject({ remaining: '5' });
    expect(await wallet(c)).toMatchObject({ available: credits('5'), arrears: 0n });
    await expectNoViolations();
  });
});

describe('holds on the overdraft limit', () => {
  /** A wallet with a 5-credit overdraft limit, 10 credits in one lot, and a hold of 14 (4 on overdraft). */
  const overdrawn = async () => {
    const c = await newCustomer(credits('5'));
    const l = await grant(c, 'g', '10');
    const r = await place(c, 'h', '14');
    expect(r).toMatchObject({
      outcome: 'placed',
      hold: { amount: '14', held: '14', overdraft: '4', lots: [{ lotId: l.id, held: '10' }] },
    });
    expect(await wallet(c)).toMatchObject({ available: credits('-4'), held: credits('14'), arrears: 0n });
    await expectNoViolations();
    return { c, lotId: l.id };
  };

  it('places the uncovered part on no lot: available(null) → held(null)', async () => {
    const { c, lotId } = await overdrawn();
    expect(await entriesOf(c, 'hold_place')).toEqual([
      { account: 'available', lot: lotId, amount: '-10000000' },
      { account: 'held', lot: lotId, amount: '10000000' },
      { account: 'available', lot: null, amount: '-4000000' },
      { account: 'held', lot: null, amount: '4000000' },
    ]);
  });

  it('refuses a hold beyond the room left, counting other holds’ overdraft, and writes no hold', async () => {
    const { c } = await overdrawn();
    const before = await snapshot(c);
    const r = await place(c, 'h2', '2');
    expect(r).toEqual({ outcome: 'rejected', reason: 'insufficient_credits', available: '-4', shortfall: '1' });
    const after = await snapshot(c);
    expect({ ...after, k: before.k }).toEqual(before);
    expect((await place(c, 'h3', '1')).outcome).toBe('placed'); // exactly at the limit
    expect(await wallet(c)).toMatchObject({ available: credits('-5'), held: credits('15') });
    await expectNoViolations();
  });

  it('refuses at once a hold larger than lots + limit, with the shortfall', async () => {
    const c = await newCustomer(credits('5'));
    await grant(c, 'g', '10');
    expect(await place(c, 'h', '16')).toEqual({
      outcome: 'rejected',
      reason: 'insufficient_credits',
      available: '10',
      shortfall: '1',
    });
    expect(await wallet(c)).toMatchObject({ available: credits('10'), held: 0n });
  });

  it('capture takes the lots first and the overdraft last, which becomes arrears', async () => {
    const { c, lotId } = await overdrawn();
    const v = (await holds.capture(cmd(c, 'c1'), { holdId: 'h', amount: credits('9') })).result;
    expect(v).toMatchObject({ held: '5', overdraft: '4', captured: '9', lots: [{ lotId, held: '1' }] });
    expect(await wallet(c)).toMatchObject({ available: credits('-4'), held: credits('5'), arrears: 0n });
    const v2 = (await holds.capture(cmd(c, 'c2'), { holdId: 'h', amount: credits('3') })).result;
    expect(v2).toMatchObject({ held: '2', overdraft: '2', captured: '12', lots: [] });
    expect(await wallet(c)).toMatchObject({ available: credits('-4'), held: credits('2'), arrears: credits('2') });
    expect((await entriesOf(c, 'hold_capture')).slice(-4)).toEqual([
      { account: 'held', lot: lotId, amount: '-1000000' },
      { account: 'consumed', lot: lotId, amount: '1000000' },
      { account: 'held', lot: null, amount: '-2000000' },
      { account: 'consumed', lot: null, amount: '2000000' },
    ]);
    await expectNoViolations();
    // Settle one more: captured from the overdraft (arrears 3); the last credit goes back.
    const s = (await holds.settle(cmd(c, 's'), { holdId: 'h', amount: credits('13') })).result;
    expect(s).toMatchObject({ captured: '13', released: '1', overage: '0', hold: { held: '0', overdraft: '0' } });
    expect(await wallet(c)).toMatchObject({ available: credits('-3'), held: 0n, arrears: credits('3') });
    await expectNoViolations();
  });

  it('release gives the overdraft part back', async () => {
    const { c, lotId } = await overdrawn();
    const r = (await holds.release(cmd(c, 'r'), { holdId: 'h', status: 'released' })).result;
    expect(r).toMatchObject({ status: 'released', held: '0', overdraft: '0', released: '14' });
    expect(await wallet(c)).toMatchObject({ available: credits('10'), held: 0n, arrears: 0n });
    expect(await lot(lotId)).toEqual({ remaining: '10', held: '0', status: 'active' });
    await expectNoViolations();
  });

  it('settle below the lots’ part releases the whole overdraft part', async () => {
    const { c } = await overdrawn();
    const s = (await holds.settle(cmd(c, 's'), { holdId: 'h', amount: credits('7') })).result;
    expect(s).toMatchObject({ captured: '7', released: '7' });
    expect(await wallet(c)).toMatchObject({ available: credits('3'), held: 0n, arrears: 0n });
    await expectNoViolations();
  });

  it('a capture of overdraft is paid at once from credits granted meanwhile', async () => {
    const { c, lotId } = await overdrawn();
    const fresh = await grant(c, 'g2', '20');
    expect(fresh.remaining).toBe('20'); // nothing owed yet: the overdraft part is held, not arrears
    await holds.capture(cmd(c, 'c'), { holdId: 'h', amount: credits('14') });
    expect(await lot(lotId)).toMatchObject({ remaining: '0', held: '0', status: 'depleted' });
    expect(await lot(fresh.id)).toMatchObject({ remaining: '16' });
    expect(await wallet(c)).toMatchObject({ available: credits('16'), held: 0n, arrears: 0n });
    await expectNoViolations();
  });

  it('extend reserves on the overdraft within the room, and refuses beyond it', async () => {
    const c = await newCustomer(credits('5'));
    await grant(c, 'g', '10');
    await place(c, 'h', '8');
    const v = (await holds.extend(cmd(c, 'e1'), { holdId: 'h', amount: credits('6') })).result;
    expect(v).toMatchObject({ amount: '14', held: '14', overdraft: '4' });
    const before = await snapshot(c);
    await expect(holds.extend(cmd(c, 'e2'), { holdId: 'h', amount: credits('2') })).rejects.toMatchObject({
      code: 'InsufficientCredits',
      details: { available: '-4', shortfall: '1' },
    });
    expect(await snapshot(c)).toEqual(before);
    await expectNoViolations();
  });

  it('a wallet in arrears or frozen is refused even with overdraft room', async () => {
    const c = await newCustomer(credits('5'));
    await ledger.debit(cmd(c, 'd'), { amount: credits('1') });
    expect(await place(c, 'h', '1')).toMatchObject({ outcome: 'rejected', reason: 'arrears', shortfall: '1' });
    const f = await newCustomer(credits('5'));
    await pool.query(`UPDATE wallets SET status = 'frozen' WHERE customer_id = $1`, [f]);
    expect(await place(f, 'h', '1')).toMatchObject({ outcome: 'rejected', reason: 'frozen' });
    expect(await pool.query(`SELECT 1 FROM holds WHERE customer_id IN ($1, $2)`, [c, f])).toMatchObject({
      rowCount: 0,
    });
  });
});

describe('amounts beyond 9,000,000,000,000 credits are refused before anything is written', () => {
  const MAX = MAX_CREDITS_MICROS;

  it('a grant that would take the wallet (or the lot) past the maximum', async () => {
    const c = await newCustomer();
    await ledger.grant(cmd(c, 'g1'), { amount: MAX - 10n, kind: 'purchased' });
    const before = await snapshot(c);
    await expect(ledger.grant(cmd(c, 'g2'), { amount: 11n, kind: 'purchased' })).rejects.toMatchObject({
      code: 'AmountTooLarge',
    });
    const other = await newCustomer();
    await expect(ledger.grant(cmd(other, 'g'), { amount: MAX + 1n, kind: 'purchased' })).rejects.toMatchObject({
      code: 'AmountTooLarge',
    });
    expect(await snapshot(c)).toEqual(before);
    await ledger.grant(cmd(c, 'g3'), { amount: 10n, kind: 'purchased' }); // exactly the maximum is fine
    expect((await wallet(c)).available).toBe(MAX);
    await expectNoViolations();
  });

  it('an extend whose hold would exceed the maximum', async () => {
    const c = await newCustomer(MAX);
    expect(
      (await holds.place(cmd(c, 'p'), { holdId: 'h', workflowId: 't', amount: MAX, expiresAt: at(1) })).result,
    ).toMatchObject({ outcome: 'placed', hold: { overdraft: '9000000000000' } });
    const before = await snapshot(c);
    await expect(holds.extend(cmd(c, 'e'), { holdId: 'h', amount: 1n })).rejects.toMatchObject({
      code: 'AmountTooLarge',
    });
    expect(await snapshot(c)).toEqual(before);
  });

  it('a settle above the maximum, or one whose overage would take arrears past it', async () => {
    const c = await newCustomer();
    await ledger.grant(cmd(c, 'g'), { amount: 10n, kind: 'purchased' });
    await holds.place(cmd(c, 'p'), { holdId: 'h', workflowId: 't', amount: 10n, expiresAt: at(1) });
    await ledger.debit(cmd(c, 'd'), { amount: MAX }); // usage is a fact: MAX in arrears
    const before = await snapshot(c);
    await expect(holds.settle(cmd(c, 's1'), { holdId: 'h', amount: MAX + 1n })).rejects.toMatchObject({
      code: 'AmountTooLarge',
    });
    await expect(holds.settle(cmd(c, 's2'), { holdId: 'h', amount: 11n })).rejects.toMatchObject({
      code: 'AmountTooLarge',
    });
    expect(await snapshot(c)).toEqual(before);
    await holds.settle(cmd(c, 's3'), { holdId: 'h', amount: 10n }); // within the hold: fine
    await expectNoViolations();
  });
});
