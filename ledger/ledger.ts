import { randomUUID } from 'node:crypto';
import { formatCredits } from '../domain/amount';
import { DomainError, customerNotFound, idempotencyConflict, idempotencyInFlight, lotNotFound } from '../domain/errors';
import { allocate, DEFAULT_PRIORITY, isDrawable, type LotKind, type LotStatus } from '../domain/lots';
import { applyWalletDeltas, lockWallet, type WalletRow } from '../db/customers';
import { findKey, saveKey, tryLockKey } from '../db/idempotency';
import { appendTransaction, type Entry } from '../db/ledger';
import { insertLot, lockLot, lockOpenLots, updateLots, type LotRow, type Recurrence } from '../db/lots';
import { withTransaction, type Pool, type Tx } from '../db/pool';
import { lotView, type LotView } from './views';

/**
 * The ledger core: every credit movement goes through `run`, which gives it
 *  - one database transaction,
 *  - an idempotency key (replay → the stored first result; other request → IdempotencyConflict),
 *  - the wallet row lock first, then lot locks in id order (a fixed order, so writers never deadlock),
 *  - cached wallet balances updated from the very entries it appends.
 * System accounts are never rows: their balances are sums of entries, so no hot row.
 */
export interface Command {
  /** Globally unique; callers scope it (e.g. `grant:<customer>:<Idempotency-Key>`, `<workflowId>:<step>`). */
  key: string;
  /** Hash of the request, to tell an exact replay from a different request under the same key. */
  requestHash: string;
  customerId: string;
}

export interface Outcome<R> {
  result: R;
  replayed: boolean;
}

interface Ctx {
  tx: Tx;
  wallet: WalletRow;
  now: Date;
  key: string;
}

export interface GrantInput {
  amount: bigint;
  kind: LotKind;
  priority?: number;
  effectiveAt?: Date;
  expiresAt?: Date;
  rolloverCap?: bigint;
  recurrence?: Recurrence;
  cost?: { amountMinor: number; currency: string };
  paymentReference?: string;
  reason?: string;
}

export interface GrantResult {
  lot: LotView;
  transactionId: string;
}

export interface DebitResult {
  transactionId: string;
  amount: string;
  draws: { lotId: string; amount: string }[];
  /** The part no drawable lot could pay, added to the wallet's arrears. */
  arrears: string;
}

export interface VoidResult {
  lot: LotView;
  transactionId: string;
  voided: string;
}

export class Ledger {
  constructor(
    private readonly pool: Pool,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async run<R>(cmd: Command, apply: (ctx: Ctx) => Promise<R>): Promise<Outcome<R>> {
    return withTransaction(this.pool, async (tx) => {
      if (!(await tryLockKey(tx, cmd.key))) throw idempotencyInFlight(cmd.key);
      const prior = await findKey(tx, cmd.key);
      if (prior) {
        if (prior.requestHash !== cmd.requestHash) throw idempotencyConflict(cmd.key);
        return { result: prior.result as R, replayed: true };
      }
      const wallet = await lockWallet(tx, cmd.customerId);
      if (!wallet) throw customerNotFound(cmd.customerId);
      const result = await apply({ tx, wallet, now: this.clock(), key: cmd.key });
      await saveKey(tx, cmd.key, cmd.requestHash, result);
      return { result, replayed: false };
    });
  }

  grant(cmd: Command, input: GrantInput): Promise<Outcome<GrantResult>> {
    return this.run(cmd, async ({ tx, wallet, now, key }) => {
      const effectiveAt = input.effectiveAt ?? now;
      if (input.expiresAt && input.expiresAt.getTime() <= Math.max(effectiveAt.getTime(), now.getTime())) {
        throw new DomainError('InvalidRequest', 'expiresAt must be after effectiveAt and in the future');
      }
      const lot: LotRow = {
        id: randomUUID(),
        customerId: cmd.customerId,
        kind: input.kind,
        priority: input.priority ?? DEFAULT_PRIORITY[input.kind],
        original: input.amount,
        remaining: input.amount,
        held: 0n,
        effectiveAt,
        expiresAt: input.expiresAt ?? null,
        rolloverCap: input.rolloverCap ?? null,
        recurrence: input.recurrence ?? null,
        costMinor: BigInt(input.cost?.amountMinor ?? 0),
        costCurrency: input.cost?.currency ?? null,
        paymentReference: input.paymentReference ?? null,
        reason: input.reason ?? null,
        status: 'active',
        createdAt: now,
      };
      const entries: Entry[] = [
        { account: `issued:${input.kind}`, lotId: lot.id, amount: -input.amount },
        { account: 'available', lotId: lot.id, amount: input.amount },
      ];
      // Arrears are paid first from the next grant (when it is drawable now): the lot's credits
      // cover the unassigned debit that created the arrears, which the entry pair records.
      let arrearsPaid = 0n;
      if (wallet.arrears > 0n && isDrawable(lot, now)) {
        arrearsPaid = wallet.arrears < lot.remaining ? wallet.arrears : lot.remaining;
        lot.remaining -= arrearsPaid;
        if (lot.remaining === 0n) lot.status = 'depleted';
        entries.push({ account: 'available', lotId: lot.id, amount: -arrearsPaid });
        entries.push({ account: 'available', lotId: null, amount: arrearsPaid });
      }
      await insertLot(tx, lot);
      const transactionId = randomUUID();
      await appendTransaction(tx, {
        id: transactionId,
        customerId: cmd.customerId,
        type: 'grant',
        idempotencyKey: key,
        reference: input.paymentReference ?? null,
        createdAt: now,
        entries,
      });
      await applyWalletDeltas(tx, cmd.customerId, { available: input.amount, held: 0n, arrears: -arrearsPaid });
      return { lot: lotView(lot), transactionId };
    });
  }

  voidLot(cmd: Command, input: { lotId: string; reason: string }): Promise<Outcome<VoidResult>> {
    return this.run(cmd, async ({ tx, now, key }) => {
      const lot = await lockLot(tx, cmd.customerId, input.lotId);
      if (!lot) throw lotNotFound(input.lotId);
      if (lot.status !== 'active') {
        throw new DomainError('LotNotActive', `lot ${lot.id} is ${lot.status}; only an active lot can be voided`);
      }
      // Only the unused, unheld part is voided; a held part stays with its hold.
      const voided = lot.remaining;
      const entries: Entry[] =
        voided > 0n
          ? [
              { account: 'available', lotId: lot.id, amount: -voided },
              { account: 'voided', lotId: lot.id, amount: voided },
            ]
          : [];
      const transactionId = randomUUID();
      await appendTransaction(tx, {
        id: transactionId,
        customerId: cmd.customerId,
        type: 'void',
        idempotencyKey: key,
        reference: input.reason,
        createdAt: now,
        entries,
      });
      const after: LotRow = { ...lot, remaining: 0n, status: 'voided' };
      await updateLots(tx, [after]);
      await applyWalletDeltas(tx, cmd.customerId, { available: -voided, held: 0n, arrears: 0n });
      return { lot: lotView(after), transactionId, voided: formatCredits(voided) };
    });
  }

  /**
   * Consumes `amount` in consumption order. Usage is a fact: what drawable lots cannot pay
   * becomes arrears (available goes below zero by exactly that much).
   */
  debit(cmd: Command, input: { amount: bigint; type?: string; reference?: string }): Promise<Outcome<DebitResult>> {
    return this.run(cmd, async ({ tx, now, key }) => {
      if (input.amount <= 0n) throw new DomainError('InvalidRequest', 'debit amount must be positive');
      const lots = await lockOpenLots(tx, cmd.customerId);
      const { draws, shortfall } = allocate(lots, input.amount, now);
      const byId = new Map(lots.map((l) => [l.id, l]));
      const entries: Entry[] = [];
      const changes: { id: string; remaining: bigint; held: bigint; status: LotStatus }[] = [];
      for (const d of draws) {
        const lot = byId.get(d.lotId)!;
        const remaining = lot.remaining - d.amount;
        changes.push({
          id: lot.id,
          remaining,
          held: lot.held,
          status: remaining === 0n && lot.held === 0n ? 'depleted' : lot.status,
        });
        entries.push({ account: 'available', lotId: lot.id, amount: -d.amount });
        entries.push({ account: 'consumed', lotId: lot.id, amount: d.amount });
      }
      if (shortfall > 0n) {
        entries.push({ account: 'available', lotId: null, amount: -shortfall });
        entries.push({ account: 'consumed', lotId: null, amount: shortfall });
      }
      const transactionId = randomUUID();
      await appendTransaction(tx, {
        id: transactionId,
        customerId: cmd.customerId,
        type: input.type ?? 'debit',
        idempotencyKey: key,
        reference: input.reference ?? null,
        createdAt: now,
        entries,
      });
      await updateLots(tx, changes);
      await applyWalletDeltas(tx, cmd.customerId, { available: -input.amount, held: 0n, arrears: shortfall });
      return {
        transactionId,
        amount: formatCredits(input.amount),
        draws: draws.map((d) => ({ lotId: d.lotId, amount: formatCredits(d.amount) })),
        arrears: formatCredits(shortfall),
      };
    });
  }
}
