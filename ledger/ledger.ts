import { randomUUID } from 'node:crypto';
import { formatCredits } from '../domain/amount';
import { DomainError, customerNotFound, idempotencyConflict, idempotencyInFlight, lotNotFound } from '../domain/errors';
import { allocate, DEFAULT_PRIORITY, type LotKind, type LotStatus } from '../domain/lots';
import { addPeriod } from '../domain/periods';
import { applyWalletDeltas, applyWalletDeltasMany, lockWallet, lockWallets, type WalletRow } from '../db/customers';
import { findKey, saveKey, tryLockKey } from '../db/idempotency';
import { appendTransaction, appendTransactions, type Entry, type NewTransaction } from '../db/ledger';
import { insertLot, lockLot, openLotsOf, updateLots, type LotRow, type Recurrence } from '../db/lots';
import { withTransaction, type Pool, type Tx } from '../db/pool';
import { payArrears } from './arrears';
import { ensureFits } from './limits';
import { lotView, type LotView } from './views';
import { currentAudit, type Audit } from '../lib/audit';

/** Who/why/request/workflow for the transactions this database transaction appends (column defaults read them). */
async function setAudit(tx: Tx, a: Audit): Promise<void> {
  await tx.query(
    `SELECT set_config('creditflow.requested_by', $1, true), set_config('creditflow.reason', $2, true),
            set_config('creditflow.workflow_id', $3, true), set_config('creditflow.request_id', $4, true)`,
    [a.requestedBy ?? '', (a.reason ?? '').slice(0, 500), a.workflowId ?? '', a.requestId ?? ''],
  );
}

/**
 * The ledger core: every credit movement goes through `run`, which gives it
 *  - one database transaction,
 *  - an idempotency key (replay → the stored first result; other request → IdempotencyConflict),
 *  - the wallet row lock first, then lot locks in id order (a fixed order, so writers never deadlock),
 *  - cached wallet balances updated from the very entries it appends.
 * System accounts are never rows: their balances are sums of entries, so no hot row.
 */
export interface Command {
  /** Unique per customer (records are keyed (customer, key)); callers scope it (e.g. `api:grant:<customer>:<Idempotency-Key>`, `<workflowId>:<step>`). */
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
  cost?: { amountMinor: number | bigint; currency: string };
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
    const audit = currentAudit();
    return withTransaction(this.pool, async (tx) => {
      if (!(await tryLockKey(tx, cmd.key))) throw idempotencyInFlight(cmd.key);
      if (audit) await setAudit(tx, audit);
      const prior = await findKey(tx, cmd.customerId, cmd.key);
      if (prior) {
        if (prior.requestHash !== cmd.requestHash) throw idempotencyConflict(cmd.key);
        return { result: prior.result as R, replayed: true };
      }
      const wallet = await lockWallet(tx, cmd.customerId);
      if (!wallet) throw customerNotFound(cmd.customerId);
      const result = await apply({ tx, wallet, now: this.clock(), key: cmd.key });
      await saveKey(tx, cmd.customerId, cmd.key, cmd.requestHash, result);
      return { result, replayed: false };
    });
  }

  /** `also` runs in the grant's transaction (a payment marked paid with its lot, say). */
  grant(
    cmd: Command,
    input: GrantInput,
    also?: (tx: Tx, result: GrantResult, now: Date) => Promise<void>,
  ): Promise<Outcome<GrantResult>> {
    return this.run(cmd, async ({ tx, wallet, now, key }) => {
      if (input.amount <= 0n) throw new DomainError('InvalidRequest', 'grant amount must be positive');
      ensureFits('the lot', input.amount);
      // available + held: the wallet's whole balance, so neither part (nor their sum) can overflow.
      ensureFits("the wallet's credits", wallet.available + wallet.held + input.amount);
      const effectiveAt = input.effectiveAt ?? now;
      // A recurring allowance's first period ends one period after it starts, unless told otherwise.
      const expiresAt =
        input.expiresAt ?? (input.recurrence ? addPeriod(effectiveAt, input.recurrence.every) : undefined);
      if (expiresAt && expiresAt.getTime() <= Math.max(effectiveAt.getTime(), now.getTime())) {
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
        expiresAt: expiresAt ?? null,
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
      // Arrears are paid first from the next credits: this lot (when drawable now) or any other
      // drawable one, in consumption order.
      const others = wallet.arrears > 0n ? await openLotsOf(tx, [cmd.customerId]) : [];
      const paid = payArrears([lot, ...others], wallet.arrears, now);
      entries.push(...paid.entries);
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
      await updateLots(
        tx,
        paid.lots.filter((l) => l !== lot),
      );
      await applyWalletDeltas(tx, cmd.customerId, { available: input.amount, held: 0n, arrears: -paid.paid });
      const result = { lot: lotView(lot), transactionId };
      await also?.(tx, result, now);
      return result;
    });
  }

  voidLot(cmd: Command, input: { lotId: string; reason: string }): Promise<Outcome<VoidResult>> {
    return this.run(cmd, async ({ tx, now, key }) => {
      const lot = await lockLot(tx, cmd.customerId, input.lotId);
      if (!lot) throw lotNotFound(input.lotId);
      if (lot.status !== 'active') {
        throw new DomainError('LotNotActive', `lot ${lot.id} is ${lot.status}; only an active lot can be voided`);
      }
      // Past expiresAt its unheld part has expired (booked or not): nothing is left to void, and
      // an allowance's rollover and renewal at that boundary still belong to the lifecycle.
      if (lot.expiresAt && lot.expiresAt <= now) {
        throw new DomainError('LotNotActive', `lot ${lot.id} expired at ${lot.expiresAt.toISOString()}`);
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
      const [posted] = await postDebits(tx, now, [
        {
          customerId: cmd.customerId,
          amount: input.amount,
          key,
          type: input.type ?? 'debit',
          reference: input.reference,
        },
      ]);
      return posted!;
    });
  }

  /**
   * A batch of movements over several wallets in one database transaction: locks the wallets in
   * customer-id order first (the fixed order), then hands them to `fn` (which may call postDebits).
   * Idempotency is the caller's (usage events dedupe by their own key under these locks).
   */
  runBatch<R>(
    customerIds: readonly string[],
    fn: (ctx: { tx: Tx; wallets: Map<string, WalletRow>; now: Date }) => Promise<R>,
  ): Promise<R> {
    const ids = [...new Set(customerIds)].sort();
    return withTransaction(this.pool, async (tx) => fn({ tx, wallets: await lockWallets(tx, ids), now: this.clock() }));
  }
}

export interface DebitRequest {
  customerId: string;
  amount: bigint;
  /** The ledger transaction's idempotency key (unique). */
  key: string;
  type: string;
  reference?: string;
}

/**
 * Posts debits for wallets the caller has locked: one ledger transaction each, drawn in
 * consumption order from drawable lots, the rest as arrears. Set-based: a handful of statements
 * whatever the number of debits.
 */
export async function postDebits(tx: Tx, now: Date, debits: readonly DebitRequest[]): Promise<DebitResult[]> {
  const live = debits.filter((d) => d.amount > 0n);
  const lots = await openLotsOf(tx, [...new Set(live.map((d) => d.customerId))]);
  const lotsByCustomer = new Map<string, LotRow[]>();
  for (const l of lots) lotsByCustomer.set(l.customerId, [...(lotsByCustomer.get(l.customerId) ?? []), l]);
  const changed = new Map<string, { id: string; remaining: bigint; held: bigint; status: LotStatus }>();
  const transactions: NewTransaction[] = [];
  const deltas = new Map<string, { customerId: string; available: bigint; held: bigint; arrears: bigint }>();
  const results: DebitResult[] = [];
  for (const d of debits) {
    const transactionId = randomUUID();
    const own = lotsByCustomer.get(d.customerId) ?? [];
    const { draws, shortfall } = allocate(own, d.amount, now);
    const entries: Entry[] = [];
    for (const draw of draws) {
      const lot = own.find((l) => l.id === draw.lotId)!;
      lot.remaining -= draw.amount; // later debits of the same customer in this batch see it
      if (lot.remaining === 0n && lot.held === 0n) lot.status = 'depleted';
      changed.set(lot.id, { id: lot.id, remaining: lot.remaining, held: lot.held, status: lot.status });
      entries.push({ account: 'available', lotId: lot.id, amount: -draw.amount });
      entries.push({ account: 'consumed', lotId: lot.id, amount: draw.amount });
    }
    if (shortfall > 0n) {
      entries.push({ account: 'available', lotId: null, amount: -shortfall });
      entries.push({ account: 'consumed', lotId: null, amount: shortfall });
    }
    transactions.push({
      id: transactionId,
      customerId: d.customerId,
      type: d.type,
      idempotencyKey: d.key,
      reference: d.reference ?? null,
      createdAt: now,
      entries,
    });
    const delta = deltas.get(d.customerId) ?? { customerId: d.customerId, available: 0n, held: 0n, arrears: 0n };
    delta.available -= d.amount;
    delta.arrears += shortfall;
    deltas.set(d.customerId, delta);
    results.push({
      transactionId,
      amount: formatCredits(d.amount),
      draws: draws.map((x) => ({ lotId: x.lotId, amount: formatCredits(x.amount) })),
      arrears: formatCredits(shortfall),
    });
  }
  await appendTransactions(tx, transactions);
  await updateLots(tx, [...changed.values()]);
  await applyWalletDeltasMany(tx, [...deltas.values()]);
  return results;
}
