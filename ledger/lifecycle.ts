import { randomUUID } from 'node:crypto';
import { formatCredits } from '../domain/amount';
import { DomainError } from '../domain/errors';
import { isDrawable } from '../domain/lots';
import { addPeriod, rolloverSplit } from '../domain/periods';
import { applyWalletDeltas } from '../db/customers';
import { appendTransaction, type Entry } from '../db/ledger';
import { insertLot, lockLot, lotsDueBy, updateLots, upcomingExpiries, type LotRow } from '../db/lots';
import { enqueue } from '../db/outbox';
import type { Pool } from '../db/pool';
import type { Ledger } from './ledger';

/**
 * Expiry, renewal and rollover, each an idempotent ledger command keyed per lot
 * (`expire:<lot>`, `renew:<lot>`): however often a timer fires or an activity retries, a lot
 * expires or renews once. `asOf` is the workflow's clock, so time-skipping tests and late
 * timers book exactly what was due at that moment.
 */
export interface Booked {
  lotId: string;
  action: 'expired' | 'renewed';
  expired: string;
  rolledOver?: string;
  renewalLotId?: string;
  rolloverLotId?: string;
}

export interface Deadline {
  at: string;
  kind: 'expiry' | 'renewal' | 'expiring-soon-alert';
  lotId: string;
}

export const DEFAULT_ALERT_LEAD_MS = 7 * 86_400_000;

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
        let arrearsPaid = 0n;
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
          if (wallet.arrears > 0n && isDrawable(renewal, asOf)) {
            arrearsPaid = wallet.arrears < renewal.remaining ? wallet.arrears : renewal.remaining;
            renewal.remaining -= arrearsPaid;
            entries.push({ account: 'available', lotId: renewal.id, amount: -arrearsPaid });
            entries.push({ account: 'available', lotId: null, amount: arrearsPaid });
          }
        }
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
        await updateLots(tx, [{ id: lotId, remaining: 0n, held: lot.held, status: 'expired' }]);
        await applyWalletDeltas(tx, customerId, {
          available: -unused + rolled + (renewal ? lot.original : 0n),
          held: 0n,
          arrears: -arrearsPaid,
        });
        return {
          lotId,
          action: 'renewed',
          expired: formatCredits(expired),
          rolledOver: formatCredits(rolled),
          renewalLotId: renewal?.id,
          rolloverLotId: rollover?.id,
        };
      },
    );
    return result;
  }

  /** "Credits expiring soon" into the outbox, once per lot, `leadMs` before its expiry. */
  private async alerts(customerId: string, asOf: Date, leadMs: number): Promise<void> {
    const soon = (await upcomingExpiries(this.pool, customerId, asOf, 100)).filter(
      (l) => l.remaining > 0n && l.expiresAt!.getTime() - leadMs <= asOf.getTime(),
    );
    await enqueue(
      this.pool,
      soon.map((l) => ({
        dedupeKey: `expiring:${l.id}`,
        type: 'credits.expiring_soon',
        customerId,
        payload: { lotId: l.id, expiresAt: l.expiresAt!.toISOString(), amount: formatCredits(l.remaining) },
      })),
    );
  }

  async upcoming(customerId: string, asOf: Date, leadMs = DEFAULT_ALERT_LEAD_MS): Promise<Deadline[]> {
    const lots = await upcomingExpiries(this.pool, customerId, asOf, 50);
    const out: Deadline[] = [];
    for (const l of lots) {
      out.push({ at: l.expiresAt!.toISOString(), kind: l.recurrence ? 'renewal' : 'expiry', lotId: l.id });
      const alertAt = l.expiresAt!.getTime() - leadMs;
      if (alertAt > asOf.getTime() && l.remaining > 0n)
        out.push({ at: new Date(alertAt).toISOString(), kind: 'expiring-soon-alert', lotId: l.id });
    }
    return out.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0)).slice(0, 50);
  }
}
