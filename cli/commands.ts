import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { parse as parseYaml } from 'yaml';
import { CreateRefundBody, RateCardBody } from '../api/schemas';
import { refundView } from '../api/routes/refunds';
import { getRefund } from '../db/refunds';
import { requestRefund } from '../ledger/refunds';
import { DomainError } from '../domain/errors';
import { keyEvent } from '../api/routes/api-keys';
import { publishedEvent, toStoredRules } from '../api/routes/rate-cards';
import { insertAuditEvent, type NewAuditEvent } from '../db/audit-events';
import { getRateCard, insertRateCardVersion } from '../db/rate-cards';
import { withTransaction } from '../db/pool';
import { parseArgs } from 'node:util';
import { ROLES, insertApiKey, type Role } from '../db/api-keys';
import type { Pool, Tx } from '../db/pool';
import { requestHash, sha256 } from '../lib/hash';

export const USAGE = `usage: npm run cli -- keys create --role admin|service|support|viewer [--customer ID] [--name NAME]
       npm run cli -- keys revoke --id KEY_ID
       npm run cli -- rate-cards load --name NAME --file card.yaml|card.json [--effective-from RFC3339] [--if-missing]
       npm run cli -- refunds create --customer ID --lot LOT_ID [--credits N] --reason TEXT [--key IDEMPOTENCY_KEY]
       npm run cli -- refunds show --id REFUND_ID`;

/** The OS account that ran the command (none in some containers). */
function osUser(): string | null {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? null;
  }
}

/** CLI changes bypass the API, so no key asked: `cli`, with the OS user in the detail. */
const audit = (tx: Tx, e: NewAuditEvent) =>
  insertAuditEvent(tx, { ...e, requestedBy: 'cli', detail: { ...e.detail, osUser: osUser() } });

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Starts a refund's saga (Temporal); only `refunds create` needs it. */
  startRefund?: (input: { refundId: string; customerId: string }) => Promise<string>;
}

/** Operator commands. A new key is printed once; only its hash is stored. Returns the exit code. */
export async function runCli(argv: string[], pool: Pool, io: Io): Promise<number> {
  const [group, action, ...rest] = argv;
  let values: {
    role?: string;
    customer?: string;
    name?: string;
    id?: string;
    file?: string;
    'effective-from'?: string;
    'if-missing'?: boolean;
    lot?: string;
    credits?: string;
    reason?: string;
    key?: string;
  };
  try {
    values = parseArgs({
      args: rest,
      options: {
        role: { type: 'string' },
        customer: { type: 'string' },
        name: { type: 'string' },
        id: { type: 'string' },
        file: { type: 'string' },
        'effective-from': { type: 'string' },
        'if-missing': { type: 'boolean' },
        lot: { type: 'string' },
        credits: { type: 'string' },
        reason: { type: 'string' },
        key: { type: 'string' },
      },
    }).values;
  } catch (e) {
    io.err(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (group === 'keys' && action === 'create') {
    const role = values.role as Role;
    if (!ROLES.includes(role)) return fail(io, `--role must be one of ${ROLES.join(', ')}`);
    if (role === 'viewer' && !values.customer) return fail(io, 'a viewer key needs --customer');
    if (values.customer && !/^[A-Za-z0-9_.:-]{1,128}$/.test(values.customer)) return fail(io, 'invalid --customer');
    const id = `key_${randomBytes(6).toString('hex')}`;
    const secret = `cf_${role}_${randomBytes(24).toString('base64url')}`;
    const customerId = values.customer ?? null;
    const row = { id, role, customerId, name: values.name ?? null };
    await withTransaction(pool, async (tx) => {
      await insertApiKey(tx, { ...row, keyHash: sha256(secret) });
      await audit(tx, keyEvent('api_key.created', row));
    });
    io.out(JSON.stringify({ id, role, customerId, key: secret }));
    return 0;
  }
  if (group === 'keys' && action === 'revoke' && values.id) {
    const id = values.id;
    const revoked = await withTransaction(pool, async (tx) => {
      const r = await tx.query<{ role: Role; customer_id: string | null; name: string | null }>(
        `UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING role, customer_id, name`,
        [id],
      );
      const k = r.rows[0];
      if (k)
        await audit(tx, keyEvent('api_key.revoked', { id, role: k.role, customerId: k.customer_id, name: k.name }));
      return k !== undefined;
    });
    io.out(JSON.stringify({ id, revoked }));
    return revoked ? 0 : 1;
  }
  if (group === 'rate-cards' && action === 'load' && values.name && values.file) {
    if (values['if-missing'] && (await getRateCard(pool, values.name))) {
      io.out(JSON.stringify({ name: values.name, skipped: 'a version already exists' }));
      return 0;
    }
    return loadRateCard(pool, io, values.name, values.file, values['effective-from']);
  }
  if (group === 'refunds' && action === 'create') return createRefund(pool, io, values);
  if (group === 'refunds' && action === 'show' && values.id) {
    const row = await getRefund(pool, values.id);
    if (!row) return fail(io, `no refund ${values.id}`);
    io.out(JSON.stringify(refundView(row)));
    return 0;
  }
  return fail(io, USAGE);
}

/** The same request path as POST /v1/refunds (validated by its schema), requested by `cli`. */
async function createRefund(
  pool: Pool,
  io: Io,
  v: { customer?: string; lot?: string; credits?: string; reason?: string; key?: string },
): Promise<number> {
  const parsed = CreateRefundBody.safeParse({
    customerId: v.customer,
    lotId: v.lot,
    credits: v.credits,
    reason: v.reason,
  });
  if (!parsed.success) return fail(io, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n'));
  if (!io.startRefund) return fail(io, 'refunds need Temporal (TEMPORAL_ADDRESS)');
  const b = parsed.data;
  const key = v.key ?? `cli_${randomBytes(12).toString('hex')}`;
  try {
    const row = await requestRefund(
      pool,
      io.startRefund,
      {
        customerId: b.customerId,
        lotId: b.lotId,
        ...(b.credits !== undefined ? { credits: b.credits } : {}),
        reason: b.reason,
        requestedBy: 'cli',
        idempotencyKey: key,
        requestHash: requestHash({ ...b, credits: b.credits?.toString() ?? null }),
      },
      new Date(),
    );
    io.out(JSON.stringify({ refundId: row.id, status: row.status, workflowId: row.workflowId, key }));
    return 0;
  } catch (e) {
    if (!(e instanceof DomainError)) throw e;
    io.err(`${e.code}: ${e.message}`); // refused: exit 1, like an unknown key to revoke
    return 1;
  }
}

/** Publishes a card version from a JSON or YAML file, validated by the same schema as the API. */
async function loadRateCard(pool: Pool, io: Io, name: string, file: string, effectiveFrom?: string): Promise<number> {
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(name)) return fail(io, 'invalid --name');
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8')); // YAML is a superset of JSON
  } catch (e) {
    return fail(io, `cannot read ${file}: ${(e as Error).message}`);
  }
  const withDate = effectiveFrom && doc && typeof doc === 'object' ? { ...doc, effectiveFrom } : doc;
  const parsed = RateCardBody.safeParse(withDate);
  if (!parsed.success) {
    return fail(io, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n'));
  }
  const card = await withTransaction(pool, async (tx) => {
    const c = await insertRateCardVersion(tx, {
      name,
      effectiveFrom: parsed.data.effectiveFrom ?? new Date(),
      rules: toStoredRules(parsed.data.rules),
    });
    await audit(tx, publishedEvent(c));
    return c;
  });
  io.out(
    JSON.stringify({
      name: card.name,
      version: card.version,
      effectiveFrom: card.effectiveFrom,
      rules: card.rules.length,
    }),
  );
  return 0;
}

function fail(io: Io, message: string): number {
  io.err(message);
  return 2;
}
