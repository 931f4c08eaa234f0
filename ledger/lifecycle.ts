import { randomUUID } from 'node:crypto';
import { formatCredits } from '../domain/amount';
import { DomainError } from '../domain/errors';
import { addPeriod, rolloverSplit } from '../domain/periods';
import { applyWalletDeltas } from '../db/customers';
import { appendTransaction, type Entry } from '../db/ledger';
import {
  arrearsPayable,
  insertLot,
  lockLot,
  lotsDueBy,
  openLotsOf,
  updateLots,
  upcomingEffective,
  upcomingExpiries,
  type LotRow,
} from '../db/lots';
import type { Pool } from '../db/pool';
import { composeKey } from '../lib/ids';
import { payArrears } from './arrears';
import type { Ledger } from './ledger';
import { notify, type Notification } from './notify';

/**
 * Expiry, renewal and rollover, each an idempotent ledger command keyed per lot
 * (`expire:<lot>`, `renew:<lot>`): however often a timer fires or an activity retries, a lot
 * expires or renews once. `asOf` is the workflow's clock, so time-skipping tests and late
 * timers book exactly what was due at that moment.
 */
export interface Booked {
  lotId: string;
  action: 'expired' | 'renewed' | 'arrears-paid';
  expired: string;
  /** Arrears paid from this lot (a renewal, or a lot that became drawable). */
  arrearsPaid?: string;
  rolledOver?: string;
  renewalLotId?: string;
  rolloverLotId?: string;
}

export interface Deadline {
  at: string;
  /** `effective`: a future-dated lot becomes drawable (and pays arrears, if any, then). */
  kind: 'expiry' | 'renewal' | 'expiring-soon-alert' | 'effective';
  lotId: string;
}

export const DEFAULT_ALERT_LEAD_MS = 7 * 86_400_000;

const later = (a: Date, b: Date) => (a > b ? a : b);

const due = (lot: LotRow, asOf: Date) =>
  (lot.status === 'active' || lot.status === 'depleted') && lot.expiresAt !== null && lot.expiresAt <= asOf;

export class LifecycleLedger {
  constructor(
    private readonly ledger: Ledger,
    private readonly pool: Pool,
  ) {}

  /** Books everything due by `asOf` (also several periods late), raises alerts, returns what comes next. */
  async tick(
    customerId: string,
    asOf: Date,
    leadMs = DEFAULT_ALERT_LEAD_MS,
  ): Promise<{ booked: Booked[]; upcoming: Deadline[] }> {
    const booked: Booked[] = [];
    for (let round = 0; round < 1000; round++) {
      const lots = await lotsDueBy(this.pool, customerId, asOf);
      if (lots.length === 0) break;
      for (const lot of lots) {
        const r = lot.recurrence
          ? await this.renew(customerId, lot.id, asOf)
          : await this.expire(customerId, lot.id, asOf);
        if (r) booked.push(r);
      }
    }
    // Lots that became drawable (reached effectiveAt) while the wallet owes: pay from them now.
    for (let round = 0; round < 10; round++) {
      const version = await arrearsPayable(this.pool, customerId, asOf);
      if (version === null) break;
      const paid = await this.payArrears(customerId, version, asOf);
      if (paid === null) continue; // the wallet moved meanwhile: look again
      if (paid.length === 0) break;
      booked.push(...paid);
    }
    await this.alerts(customerId, asOf, leadMs);
    return { booked, upcoming: await this.upcoming(customerId, asOf, leadMs) };
  }

  async expire(customerId: string, lotId: string, asOf: Date): Promise<Booked | null> {
    const { result } = await this.ledger.run(
      { key: `expire:${lotId}`, customerId, requestHash: 'expire' },
      async ({ tx, now, key }): Promise<Booked | null> => {
        const lot = await lockLot(tx, customerId, lotId);
        if (!lot) throw new DomainError('LotNotFound', `lot ${lotId} does not exist`);
        if (lot.expiresAt && lot.expiresAt > asOf)
          throw new DomainError('InvalidRequest', 'lot is not due to expire yet');
        if (!due(lot, asOf)) return null; // voided or already expired: nothing to do, ever
        // Only the unheld remainder expires now; a held part expires when its hold lets it go.
        const amount = lot.remaining;
        const entries: Entry[] =
          amount > 0n
            ? [
                { account: 'available', lotId, amount: -amount },
                { account: 'expired', lotId, amount },
              ]
            : [];
        await appendTransaction(tx, {
          id: randomUUID(),
          customerId,
          type: 'expiry',
          idempotencyKey: key,
          reference: `lot:${lotId}`,
          createdAt: now,
          entries,
        });
        await updateLots(tx, [{ id: lotId, remaining: 0n, held: lot.held, status: 'expired' }]);
        await applyWalletDeltas(tx, customerId, { available: -amount, held: 0n, arrears: 0n });
        if (amount > 0n) await notify(tx, [expiredNotification(customerId, lot, amount)]);
        return { lotId, action: 'expired', expired: formatCredits(amount) };
      },
    );
    return result;
  }

  /** Period boundary of a recurring allowance: roll over up to the cap, expire the rest, issue the next period. */
  async renew(customerId: string, lotId: string, asOf: Date): Promise<Booked | null> {
    const { result } = await this.ledger.run(
      { key: `renew:${lotId}`, customerId, requestHash: 'renew' },
      async ({ tx, wallet, now, key }): Promise<Booked | null> => {
        const lot = await lockLot(tx, customerId, lotId);
        if (!lot) throw new DomainError('LotNotFound', `lot ${lotId} does not exist`);
        if (!lot.expiresAt || !lot.recurrence) throw new DomainError('InvalidRequest', 'not a recurring allowance');
        if (lot.expiresAt > asOf) throw new DomainError('InvalidRequest', 'period has not ended yet');
        if (!due(lot, asOf)) return null; // voided: a voided allowance stops recurring
        const period = lot.period ?? 1;
        const hasNext = lot.recurrence.count === undefined || period < lot.recurrence.count;
        const boundary = lot.expiresAt;
        const nextEnd = addPeriod(boundary, lot.recurrence.every);
        const unused = lot.remaining;
        // Nothing rolls into a period that does not exist.
        const { rolled, expired } = rolloverSplit(unused, hasNext ? lot.rolloverCap : 0n);
        const entries: Entry[] = [];
        if (unused > 0n) entries.push({ account: 'available', lotId, amount: -unused });
        if (expired > 0n) entries.push({ account: 'expired', lotId, amount: expired });
        const base = {
          customerId,
          kind: lot.kind,
          priority: lot.priority,
          held: 0n,
          effectiveAt: boundary,
          expiresAt: nextEnd,
          costMinor: 0n,
          costCurrency: null,
          paymentReference: null,
          status: 'active' as const,
          createdAt: now,
          period: period + 1,
        };
        let rollover: LotRow | null = null;
        if (rolled > 0n) {
          rollover = {
            ...base,
            id: randomUUID(),
            original: rolled,
            remaining: rolled,
            rolloverCap: null,
            recurrence: null,
            reason: 'rollover',
            originLotId: lotId,
          };
          entries.push({ account: 'available', lotId: rollover.id, amount: rolled });
        }
        let renewal: LotRow | null = null;
        if (hasNext) {
          renewal = {
            ...base,
            id: randomUUID(),
            original: lot.original,
            remaining: lot.original,
            rolloverCap: lot.rolloverCap,
            recurrence: lot.recurrence,
            reason: 'renewal',
            renewsLotId: lotId,
          };
          entries.push({ account: `issued:${lot.kind}`, lotId: renewal.id, amount: -lot.original });
          entries.push({ account: 'available', lotId: renewal.id, amount: lot.original });
        }
        // The new period's credits (renewal and rollover) pay arrears first, with any other drawable lot.
        const fresh = [rollover, renewal].filter((l): l is LotRow => l !== null);
        const others = wallet.arrears > 0n ? (await openLotsOf(tx, [customerId])).filter((l) => l.id !== lotId) : [];
        const paid = payArrears([...fresh, ...others], wallet.arrears, later(asOf, now));
        entries.push(...paid.entries);
        if (rollover) await insertLot(tx, rollover);
        if (renewal) await insertLot(tx, renewal);
        await appendTransaction(tx, {
          id: randomUUID(),
          customerId,
          type: 'renewal',
          idempotencyKey: key,
          reference: `lot:${lotId}`,
          createdAt: now,
          entries,
        });
        await updateLots(tx, [
          { id: lotId, remaining: 0n, held: lot.held, status: 'expired' },
          ...paid.lots.filter((l) => !fresh.includes(l)),
        ]);
        await applyWalletDeltas(tx, customerId, {
          available: -unused + rolled + (renewal ? lot.original : 0n),
          held: 0n,
          arrears: -paid.paid,
        });
        if (expired > 0n) await notify(tx, [expiredNotification(customerId, lot, expired)]);
        return {
          lotId,
          action: 'renewed',
          expired: formatCredits(expired),
          rolledOver: formatCredits(rolled),
          renewalLotId: renewal?.id,
          rolloverLotId: rollover?.id,
          ...(paid.paid > 0n ? { arrearsPaid: formatCredits(paid.paid) } : {}),
        };
      },
    );
    return result;
  }

  /**
   * Pays arrears from the lots drawable at `asOf` (or the ledger's clock, when later: a lot past its
   * expiry is never drawn). Keyed by the wallet version it was decided on, so a retry pays once;
   * null when the wallet moved meanwhile (the caller looks again).
   */
  private async payArrears(customerId: string, version: bigint, asOf: Date): Promise<Booked[] | null> {
    const { result } = await this.ledger.run(
      { key: composeKey('arrears', customerId, version.toString()), customerId, requestHash: 'arrears' },
      async ({ tx, wallet, now, key }): Promise<Booked[] | null> => {
        if (wallet.version !== version) return null;
        const paid = payArrears(await openLotsOf(tx, [customerId]), wallet.arrears, later(asOf, now));
        if (paid.paid === 0n) return [];
        await appendTransaction(tx, {
          id: randomUUID(),
          customerId,
          type: 'arrears_payment',
          idempotencyKey: key,
          reference: null,
          createdAt: now,
          entries: paid.entries,
        });
        await updateLots(tx, paid.lots);
        await applyWalletDeltas(tx, customerId, { available: 0n, held: 0n, arrears: -paid.paid });
        return paid.draws.map((d) => ({
          lotId: d.lotId,
          action: 'arrears-paid',
          expired: '0',
          arrearsPaid: formatCredits(d.amount),
        }));
      },
    );
    return result;
  }

  /** "Credits expiring soon" into the outbox, once per lot, `leadMs` before its expiry. */
  private async alerts(customerId: string, asOf: Date, leadMs: number): Promise<void> {
    const soon = (await upcomingExpiries(this.pool, customerId, asOf, 100)).filter(
      (l) => l.remaining > 0n && l.expiresAt!.getTime() - leadMs <= asOf.getTime(),
    );
    await notify(
      this.pool,
      soon.map((l) => ({
        type: 'credits.expiring_soon',
        customerId,
        dedupeKey: `expiring:${l.id}`,
        data: { lotId: l.id, expiresAt: l.expiresAt!.toISOString(), amount: formatCredits(l.remaining) },
      })),
    );
  }

  async upcoming(customerId: string, asOf: Date, leadMs = DEFAULT_ALERT_LEAD_MS): Promise<Deadline[]> {
    const lots = await upcomingExpiries(this.pool, customerId, asOf, 50);
    const out: Deadline[] = (await upcomingEffective(this.pool, customerId, asOf, 50)).map((l) => ({
      at: l.effectiveAt.toISOString(),
      kind: 'effective',
      lotId: l.id,
    }));
    for (const l of lots) {
      out.push({ at: l.expiresAt!.toISOString(), kind: l.recurrence ? 'renewal' : 'expiry', lotId: l.id });
      const alertAt = l.expiresAt!.getTime() - leadMs;
      if (alertAt > asOf.getTime() && l.remaining > 0n)
        out.push({ at: new Date(alertAt).toISOString(), kind: 'expiring-soon-alert', lotId: l.id });
    }
    return out.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0)).slice(0, 50);
  }
}

/** Once per lot: what its expiry (or the end of an allowance's period, beyond the rollover) took. */
const expiredNotification = (customerId: string, lot: LotRow, amount: bigint): Notification => ({
  type: 'credits.expired',
  customerId,
  dedupeKey: `expired:${lot.id}`,
  data: { lotId: lot.id, expiresAt: lot.expiresAt!.toISOString(), amount: formatCredits(amount) },
});
