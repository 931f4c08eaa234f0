import { randomUUID } from 'node:crypto';
import { formatCredits } from '../domain/amount';
import { DomainError } from '../domain/errors';
import { DEFAULT_PRIORITY, isDrawable } from '../domain/lots';
import { drawsOf, findCorrectableEvent, insertCorrection, type Draw } from '../db/corrections';
import { insertLot, lotsByIds, type LotRow } from '../db/lots';
import type { Command, Ledger, Outcome } from './ledger';
import { Movement } from './movement';

export interface CorrectionInput {
  eventId: string;
  reason: string;
  /** The API key id that asked (usage_corrections.requested_by). */
  requestedBy: string;
}

export interface CorrectionResult {
  correctionId: string;
  eventId: string;
  customerId: string;
  credits: string;
  transactionId: string;
  /** Credits given back to each lot the event's transaction drew from, in the order given back. */
  restored: { lotId: string; amount: string }[];
  /** How much the wallet's arrears went down: unplaced credits, and restored ones drawn at once (invariant 6). */
  arrearsReduced: string;
  /** The lot holding what neither the lots nor the arrears could take. */
  adjustmentLotId?: string;
}

const alreadyCorrected = (eventId: string, correctionId?: string) =>
  new DomainError(
    'AlreadyCorrected',
    `usage event ${eventId} is already corrected`,
    correctionId ? { correctionId } : {},
  );

/**
 * The event's share of its usage transaction, as (source, amount) portions in REVERSE consumption
 * order: the arrears part first, then the lot drawn last, … The events of one request share one
 * transaction and no event owns particular draws, so a correction takes back the tail of what is
 * still uncorrected — exactly the draws the transaction would not have made had it been this many
 * credits smaller. Earlier corrections of the same transaction already took their tails.
 */
export function tailPortions(draws: readonly Draw[], credits: bigint): { lotId: string | null; amount: bigint }[] {
  const out: { lotId: string | null; amount: bigint }[] = [];
  let need = credits;
  for (const d of [...draws].reverse()) {
    if (need === 0n) break;
    const left = d.drawn - d.reversed;
    const take = left < need ? left : need;
    if (take > 0n) out.push({ lotId: d.lotId, amount: take });
    need -= take;
  }
  // The transaction consumed exactly its events' credits (invariant 4), so the tail always covers it.
  if (need > 0n) throw new Error(`usage transaction cannot cover a correction of ${credits} (short ${need})`);
  return out;
}

/** Credits can go back to a lot still in use: active or depleted, inside its drawable window. */
const restorable = (l: LotRow, now: Date) =>
  (l.status === 'active' || l.status === 'depleted') && isDrawable({ ...l, status: 'active' }, now);

/**
 * Reverses one usage event's debit as a `correction` transaction: each portion back to its lot while
 * the lot is restorable (never above its original), else to pay the wallet's arrears, else into a new
 * `adjustment` lot. The consumed side is always reversed on the portion's source, so `consumed` per
 * lot stays what the lot really paid for. One correction per event: checked under the wallet lock,
 * backed by UNIQUE (customer_id, event_id).
 */
export function correctUsage(ledger: Ledger, cmd: Command, input: CorrectionInput): Promise<Outcome<CorrectionResult>> {
  return ledger.run(cmd, async ({ tx, wallet, now, key }) => {
    const event = await findCorrectableEvent(tx, cmd.customerId, input.eventId);
    if (!event)
      throw new DomainError(
        'EventNotFound',
        `usage event ${input.eventId} of customer ${cmd.customerId} does not exist`,
      );
    if (event.correctionId) throw alreadyCorrected(input.eventId, event.correctionId);

    const portions = tailPortions(await drawsOf(tx, cmd.customerId, event.transactionId), event.credits);
    const ids = portions.flatMap((p) => (p.lotId ? [p.lotId] : []));
    const lots = new Map((await lotsByIds(tx, cmd.customerId, ids)).map((l) => [l.id, l]));
    const m = new Movement([]);
    const restored = new Map<string, bigint>();
    const unplaced: { lotId: string | null; amount: bigint }[] = [];
    for (const p of portions) {
      const lot = p.lotId ? lots.get(p.lotId) : undefined;
      let back = 0n;
      if (lot && restorable(lot, now)) {
        const room = lot.original - lot.remaining - lot.held;
        back = p.amount < room ? p.amount : room;
      }
      if (lot && back > 0n) {
        lot.remaining += back;
        lot.status = 'active';
        m.lots.set(lot.id, lot);
        m.move('consumed', 'available', lot.id, back);
        restored.set(lot.id, (restored.get(lot.id) ?? 0n) + back);
      }
      if (p.amount > back) unplaced.push({ lotId: p.lotId, amount: p.amount - back });
    }

    // What no lot took: first the arrears (onto the unassigned available account the unpaid debit
    // left negative), then one new adjustment lot.
    const adjustmentId = randomUUID();
    let adjust = 0n;
    for (const u of unplaced) {
      const owed = wallet.arrears + m.arrears;
      const pay = u.amount < owed ? u.amount : owed;
      const rest = u.amount - pay;
      if (pay > 0n) {
        m.entries.push(
          { account: 'consumed', lotId: u.lotId, amount: -pay },
          { account: 'available', lotId: null, amount: pay },
        );
        m.arrears -= pay;
      }
      if (rest > 0n) {
        m.entries.push(
          { account: 'consumed', lotId: u.lotId, amount: -rest },
          { account: 'available', lotId: adjustmentId, amount: rest },
        );
        adjust += rest;
      }
      m.available += u.amount;
    }
    // Invariant 6: while the wallet still owes, credits back in drawable lots pay the arrears first.
    // (Only when every unplaced credit went to the arrears: an adjustment lot means nothing is owed.)
    await m.payArrears(tx, wallet, now);
    if (adjust > 0n) await insertLot(tx, adjustmentLot(adjustmentId, cmd.customerId, adjust, input.eventId, now));

    const transactionId = await m.write(tx, wallet, 'correction', key, `usage_event:${input.eventId}`, now);
    const correctionId = randomUUID();
    try {
      await insertCorrection(tx, {
        id: correctionId,
        customerId: cmd.customerId,
        eventId: input.eventId,
        credits: event.credits,
        transactionId,
        requestedBy: input.requestedBy,
        reason: input.reason,
        createdAt: now,
      });
    } catch (err) {
      // Unreachable under the wallet lock; the constraint is the last line.
      if ((err as { code?: string }).code === '23505') throw alreadyCorrected(input.eventId);
      throw err;
    }
    return {
      correctionId,
      eventId: input.eventId,
      customerId: cmd.customerId,
      credits: formatCredits(event.credits),
      transactionId,
      restored: [...restored].map(([lotId, amount]) => ({ lotId, amount: formatCredits(amount) })),
      arrearsReduced: formatCredits(-m.arrears),
      ...(adjust > 0n ? { adjustmentLotId: adjustmentId } : {}),
    };
  });
}

function adjustmentLot(id: string, customerId: string, amount: bigint, eventId: string, now: Date): LotRow {
  return {
    id,
    customerId,
    kind: 'adjustment',
    priority: DEFAULT_PRIORITY.adjustment,
    original: amount,
    remaining: amount,
    held: 0n,
    effectiveAt: now,
    expiresAt: null,
    rolloverCap: null,
    recurrence: null,
    costMinor: 0n,
    costCurrency: null,
    paymentReference: null,
    reason: `correction of usage event ${eventId}`,
    status: 'active',
    createdAt: now,
  };
}
