import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { ROLES, insertApiKey, type Role } from '../db/api-keys';
import type { Pool } from '../db/pool';
import { sha256 } from '../lib/hash';

export const USAGE = `usage: npm run cli -- keys create --role admin|service|support|viewer [--customer ID] [--name NAME]
       npm run cli -- keys revoke --id KEY_ID`;

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** Operator commands. A new key is printed once; only its hash is stored. Returns the exit code. */
export async function runCli(argv: string[], pool: Pool, io: Io): Promise<number> {
  const [group, action, ...rest] = argv;
  let values: { role?: string; customer?: string; name?: string; id?: string };
  try {
    values = parseArgs({
      args: rest,
      options: {
        role: { type: 'string' },
        customer: { type: 'string' },
        name: { type: 'string' },
        id: { type: 'string' },
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
    await insertApiKey(pool, { id, keyHash: sha256(secret), role, customerId, name: values.name ?? null });
    io.out(JSON.stringify({ id, role, customerId, key: secret }));
    return 0;
  }
  if (group === 'keys' && action === 'revoke' && values.id) {
    const r = await pool.query(`UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, [
      values.id,
    ]);
    io.out(JSON.stringify({ id: values.id, revoked: r.rowCount === 1 }));
    return r.rowCount === 1 ? 0 : 1;
  }
  return fail(io, USAGE);
}

function fail(io: Io, message: string): number {
  io.err(message);
  return 2;
}
