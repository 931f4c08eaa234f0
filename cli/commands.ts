import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { unstorable } from '../api/body';
import { HttpProblem } from '../api/problem';
import { keyEvent } from '../api/routes/api-keys';
import { balanceView, customerOf, ledgerPage } from '../api/routes/customers';
import { grantCredits, voidGrant } from '../api/routes/grants';
import { publishedEvent, toStoredRules } from '../api/routes/rate-cards';
import { reconciliationView, requestReconciliation, type StartReconciliation } from '../api/routes/reconciliation';
import { refundView } from '../api/routes/refunds';
import {
  CreateRefundBody,
  CustomerParams,
  GrantBody,
  IdempotencyKeyHeader,
  LedgerQuery,
  LotParams,
  RateCardBody,
  RefundParams,
} from '../api/schemas';
import { parse } from '../api/validate';
import { ROLES, insertApiKey, type Role } from '../db/api-keys';
import { insertAuditEvent, type NewAuditEvent } from '../db/audit-events';
import { withTransaction, type Pool, type Tx } from '../db/pool';
import { getRateCard, insertRateCardVersion } from '../db/rate-cards';
import { getRun, latestRun } from '../db/reconciliation';
import { getRefund } from '../db/refunds';
import { DomainError } from '../domain/errors';
import { Ledger } from '../ledger/ledger';
import { requestRefund } from '../ledger/refunds';
import { currentAudit, withAudit } from '../lib/audit';
import { requestHash, sha256 } from '../lib/hash';
import { composeKey } from '../lib/ids';
import { table } from './table';

const WHO = '--operator NAME --reason TEXT';
export const USAGE = `usage: npm run cli -- <command> [--format json|table]
reads:
  customers show|balance --customer ID
  customers ledger --customer ID [--limit N] [--type T] [--from RFC3339] [--to RFC3339] [--cursor C]
  refunds show --id REFUND_ID
  reconcile latest
writes (each needs ${WHO}: who runs it and why, recorded as requested by cli:NAME):
  grants create --customer ID --amount N --kind purchased|promotional|allowance|adjustment
                [--expires-at RFC3339] [--effective-at RFC3339] [--priority N] [--key IDEMPOTENCY_KEY]
  grants void --customer ID --lot LOT_ID [--key IDEMPOTENCY_KEY]
  refunds create --customer ID --lot LOT_ID [--credits N] [--key IDEMPOTENCY_KEY]
  reconcile run [--wait]
  keys create --role admin|service|support|viewer [--customer ID] [--name NAME]
  keys revoke --id KEY_ID
  rate-cards load --name NAME --file card.yaml|card.json [--effective-from RFC3339] [--if-missing]
exit: 0 done, 1 refused or not found, 2 bad arguments, 3 reconcile run --wait found discrepancies`;

const OPTIONS = {
  format: { type: 'string' },
  operator: { type: 'string' },
  reason: { type: 'string' },
  role: { type: 'string' },
  customer: { type: 'string' },
  name: { type: 'string' },
  id: { type: 'string' },
  file: { type: 'string' },
  'effective-from': { type: 'string' },
  'if-missing': { type: 'boolean' },
  lot: { type: 'string' },
  credits: { type: 'string' },
  key: { type: 'string' },
  amount: { type: 'string' },
  kind: { type: 'string' },
  'expires-at': { type: 'string' },
  'effective-at': { type: 'string' },
  priority: { type: 'string' },
  limit: { type: 'string' },
  type: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  cursor: { type: 'string' },
  wait: { type: 'boolean' },
} as const;
type Values = Partial<Record<keyof typeof OPTIONS, string>> & { 'if-missing'?: boolean; wait?: boolean };

/** The schemas' field names as the flags that carry them, for error messages. */
const FLAG_OF: Record<string, string> = {
  id: 'customer',
  customerId: 'customer',
  lotId: 'lot',
  expiresAt: 'expires-at',
  effectiveAt: 'effective-at',
  refundId: 'id',
};

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Starts a refund's saga (Temporal); only `refunds create` needs it. */
  startRefund?: (input: { refundId: string; customerId: string }) => Promise<string>;
  /** Starts a reconciliation run (Temporal), the function POST /v1/reconciliation/runs uses. */
  startReconciliation?: StartReconciliation;
  /** Waits for a workflow to finish (`reconcile run --wait`). */
  waitFor?: (workflowId: string) => Promise<unknown>;
  /** Tells the customer's lifecycle workflow about a lot with an end (best effort, as the API). */
  lifecycle?: (customerId: string) => Promise<void>;
}

interface Ctx {
  pool: Pool;
  io: Io;
  v: Values;
  print: (value: unknown) => void;
}

/** Who and why, required on every write: `cli:<operator>` (no `:` inside) and a reason Postgres can store. */
const Who = z.strictObject({
  operator: z
    .string({ message: 'is required: who runs this command (an operator name)' })
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'an operator name: 1–64 characters of A-Za-z0-9_.-'),
  reason: z.string({ message: 'is required: why (recorded with the change)' }).min(1).max(500),
});

/** The OS account that ran the command (none in some containers). */
function osUser(): string | null {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? null;
  }
}

/** What audit_events add for a CLI change: the reason and the OS user (who is `cli:<operator>`). */
const cliDetail = () => ({ reason: currentAudit()?.reason, osUser: osUser() });
const audit = (tx: Tx, e: NewAuditEvent) => insertAuditEvent(tx, { ...e, detail: { ...e.detail, ...cliDetail() } });

/** Validated like the API's requests (api/validate.ts: NUL, overflow, formats); a 400 names the flag. */
const valid = <S extends z.ZodType>(schema: S, value: Record<string, unknown>): z.infer<S> =>
  parse(schema, Object.fromEntries(Object.entries(value).filter(([, x]) => x !== undefined)), 'body');

const newKey = () => `cli_${randomBytes(12).toString('hex')}`;

/** A ledger command: keyed like the API's (the same --key is the same movement), requested by the CLI. */
function ledgerCommand(op: string, customerId: string, key: string | undefined, input: Record<string, unknown>) {
  const k = key === undefined ? newKey() : valid(z.strictObject({ key: IdempotencyKeyHeader }), { key }).key;
  return { key: k, cmd: { customerId, key: composeKey('cli', op, customerId, k), requestHash: requestHash(input) } };
}

const COMMANDS: Record<string, { write: boolean; run: (c: Ctx) => Promise<number> }> = {
  'customers show': {
    write: false,
    run: async ({ pool, v, print }) => {
      print(await customerOf(pool, valid(CustomerParams, { id: v.customer }).id));
      return 0;
    },
  },
  'customers balance': {
    write: false,
    run: async ({ pool, v, print }) => {
      print(await balanceView(pool, valid(CustomerParams, { id: v.customer }).id, new Date()));
      return 0;
    },
  },
  'customers ledger': {
    write: false,
    run: async ({ pool, v, print }) => {
      const { id } = valid(CustomerParams, { id: v.customer });
      const q = valid(LedgerQuery, { type: v.type, from: v.from, to: v.to, cursor: v.cursor, limit: v.limit });
      print(await ledgerPage(pool, id, q));
      return 0;
    },
  },
  'grants create': {
    write: true,
    run: async ({ pool, io, v, print }) => {
      const { id } = valid(CustomerParams, { id: v.customer });
      const raw = {
        amount: v.amount,
        kind: v.kind,
        expiresAt: v['expires-at'],
        effectiveAt: v['effective-at'],
        priority: v.priority !== undefined && /^[0-9]{1,9}$/.test(v.priority) ? Number(v.priority) : v.priority,
        reason: currentAudit()?.reason,
      };
      const b = valid(GrantBody, raw);
      const { key, cmd } = ledgerCommand('grant', id, v.key, { op: 'grant', customerId: id, body: raw });
      const deps = { ledger: new Ledger(pool), lifecycle: io.lifecycle };
      print({ ...(await grantCredits(deps, cmd, b)), key });
      return 0;
    },
  },
  'grants void': {
    write: true,
    run: async ({ pool, v, print }) => {
      const { id, lotId } = valid(LotParams, { id: v.customer, lotId: v.lot });
      const reason = currentAudit()!.reason!;
      const { key, cmd } = ledgerCommand('void', id, v.key, { op: 'void', customerId: id, lotId, body: { reason } });
      print({ ...(await voidGrant({ ledger: new Ledger(pool) }, cmd, lotId, reason)), key });
      return 0;
    },
  },
  'refunds create': { write: true, run: createRefund },
  'refunds show': {
    write: false,
    run: async ({ pool, io, v, print }) => {
      const { refundId } = valid(RefundParams, { refundId: v.id });
      const row = await getRefund(pool, refundId);
      if (!row) return refused(io, `no refund ${refundId}`);
      print(refundView(row));
      return 0;
    },
  },
  'reconcile run': {
    write: true,
    run: async ({ pool, io, v, print }) => {
      if (!io.startReconciliation) return fail(io, 'reconcile run needs Temporal (TEMPORAL_ADDRESS)');
      const started = await requestReconciliation(pool, io.startReconciliation, cliDetail());
      if (!v.wait) {
        print(started);
        return 0;
      }
      await io.waitFor!(started.workflowId);
      const run = (await getRun(pool, started.runId))!;
      print(reconciliationView(run));
      return run.status === 'clean' ? 0 : 3;
    },
  },
  'reconcile latest': {
    write: false,
    run: async ({ pool, io, print }) => {
      const run = await latestRun(pool);
      if (!run) return refused(io, 'no reconciliation has run yet');
      print(reconciliationView(run));
      return 0;
    },
  },
  'keys create': { write: true, run: createKey },
  'keys revoke': { write: true, run: revokeKey },
  'rate-cards load': {
    write: true,
    run: async ({ pool, io, v, print }) => {
      if (!v.name || !v.file) return fail(io, 'rate-cards load needs --name and --file');
      if (v['if-missing'] && (await getRateCard(pool, v.name))) {
        print({ name: v.name, skipped: 'a version already exists' });
        return 0;
      }
      return loadRateCard({ pool, io, v, print }, v.name, v.file, v['effective-from']);
    },
  },
};

/** Operator commands; writes record who (`cli:<operator>`) and why. Returns the exit code. */
export async function runCli(argv: string[], pool: Pool, io: Io): Promise<number> {
  const [group, action, ...rest] = argv;
  let v: Values;
  try {
    v = parseArgs({ args: rest, options: OPTIONS }).values as Values;
  } catch (e) {
    return fail(io, `${(e as Error).message}\n${USAGE}`);
  }
  // Whatever the command: PostgreSQL cannot store NUL or lone surrogates.
  for (const [flag, value] of Object.entries(v)) {
    const why = typeof value === 'string' ? unstorable(value) : null;
    if (why) return fail(io, `--${flag}: ${why}`);
  }
  const format = v.format ?? 'json';
  if (format !== 'json' && format !== 'table') return fail(io, '--format must be json or table');
  const command = COMMANDS[`${group} ${action}`];
  if (!command) return fail(io, USAGE);
  const print = (value: unknown) =>
    format === 'table' ? table(value).forEach((l) => io.out(l)) : io.out(JSON.stringify(value));
  try {
    if (!command.write) return await command.run({ pool, io, v, print });
    const who = Who.safeParse({ operator: v.operator, reason: v.reason });
    if (!who.success) return fail(io, who.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('\n'));
    const requestedBy = `cli:${who.data.operator}`;
    return await withAudit({ requestedBy, reason: who.data.reason }, () => command.run({ pool, io, v, print }));
  } catch (e) {
    if (e instanceof DomainError) return refused(io, `${e.code}: ${e.message}`);
    if (!(e instanceof HttpProblem)) throw e;
    if (e.status !== 400) return refused(io, e.message);
    const errors = (e.extra.errors as { path: string; message: string }[] | undefined) ?? [];
    const flag = (path: string) => {
      const field = path.split('.')[1] ?? path;
      return `--${FLAG_OF[field] ?? field}`;
    };
    return fail(io, errors.map((x) => `${flag(x.path)}: ${x.message}`).join('\n') || e.message);
  }
}

/** The same request path as POST /v1/refunds (validated by its schema). */
async function createRefund({ pool, io, v, print }: Ctx): Promise<number> {
  const b = valid(CreateRefundBody, {
    customerId: v.customer,
    lotId: v.lot,
    credits: v.credits,
    reason: v.reason,
  });
  if (!io.startRefund) return fail(io, 'refunds need Temporal (TEMPORAL_ADDRESS)');
  const key = v.key ?? newKey();
  const row = await requestRefund(
    pool,
    io.startRefund,
    {
      customerId: b.customerId,
      lotId: b.lotId,
      ...(b.credits !== undefined ? { credits: b.credits } : {}),
      reason: b.reason,
      requestedBy: currentAudit()!.requestedBy!,
      idempotencyKey: key,
      requestHash: requestHash({ ...b, credits: b.credits?.toString() ?? null }),
    },
    new Date(),
  );
  print({ refundId: row.id, status: row.status, workflowId: row.workflowId, key });
  return 0;
}

/** A new key is printed once; only its hash is stored. */
async function createKey({ pool, io, v, print }: Ctx): Promise<number> {
  const role = v.role as Role;
  if (!ROLES.includes(role)) return fail(io, `--role must be one of ${ROLES.join(', ')}`);
  if (role === 'viewer' && !v.customer) return fail(io, 'a viewer key needs --customer');
  const customerId = v.customer === undefined ? null : valid(CustomerParams, { id: v.customer }).id;
  const id = `key_${randomBytes(6).toString('hex')}`;
  const secret = `cf_${role}_${randomBytes(24).toString('base64url')}`;
  const row = { id, role, customerId, name: v.name ?? null };
  await withTransaction(pool, async (tx) => {
    await insertApiKey(tx, { ...row, keyHash: sha256(secret) });
    await audit(tx, keyEvent('api_key.created', row));
  });
  print({ id, role, customerId, key: secret });
  return 0;
}

async function revokeKey({ pool, io, v, print }: Ctx): Promise<number> {
  if (!v.id) return fail(io, 'keys revoke needs --id');
  const id = v.id;
  const revoked = await withTransaction(pool, async (tx) => {
    const r = await tx.query<{ role: Role; customer_id: string | null; name: string | null }>(
      `UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING role, customer_id, name`,
      [id],
    );
    const k = r.rows[0];
    if (k) await audit(tx, keyEvent('api_key.revoked', { id, role: k.role, customerId: k.customer_id, name: k.name }));
    return k !== undefined;
  });
  print({ id, revoked });
  return revoked ? 0 : 1;
}

/** Publishes a card version from a JSON or YAML file, validated by the same schema as the API. */
async function loadRateCard(c: Ctx, name: string, file: string, effectiveFrom?: string): Promise<number> {
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(name)) return fail(c.io, 'invalid --name');
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8')); // YAML is a superset of JSON
  } catch (e) {
    return fail(c.io, `cannot read ${file}: ${(e as Error).message}`);
  }
  const withDate = effectiveFrom && doc && typeof doc === 'object' ? { ...doc, effectiveFrom } : doc;
  const parsed = RateCardBody.safeParse(withDate);
  if (!parsed.success) {
    return fail(c.io, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n'));
  }
  const card = await withTransaction(c.pool, async (tx) => {
    const r = await insertRateCardVersion(tx, {
      name,
      effectiveFrom: parsed.data.effectiveFrom ?? new Date(),
      rules: toStoredRules(parsed.data.rules),
    });
    await audit(tx, publishedEvent(r));
    return r;
  });
  c.print({ name: card.name, version: card.version, effectiveFrom: card.effectiveFrom, rules: card.rules.length });
  return 0;
}

/** Bad arguments: exit 2. */
function fail(io: Io, message: string): number {
  io.err(message);
  return 2;
}

/** Refused or not found (a domain answer): exit 1. */
function refused(io: Io, message: string): number {
  io.err(message);
  return 1;
}
