import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { ROLES, insertApiKey, type Role } from '../db/api-keys';
import { createPool } from '../db/pool';
import { loadConfig } from '../lib/config';
import { sha256 } from '../lib/hash';

const USAGE = `usage: npm run cli -- keys create --role admin|service|support|viewer [--customer ID] [--name NAME]
       npm run cli -- keys revoke --id KEY_ID`;

/** Operator CLI. Prints a new key once; only its hash is stored. */
async function main(argv: string[]): Promise<number> {
  const [group, action, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      role: { type: 'string' },
      customer: { type: 'string' },
      name: { type: 'string' },
      id: { type: 'string' },
    },
  });
  const pool = createPool(loadConfig().DATABASE_URL, 2);
  try {
    if (group === 'keys' && action === 'create') {
      const role = values.role as Role;
      if (!ROLES.includes(role)) return fail(`--role must be one of ${ROLES.join(', ')}`);
      if (role === 'viewer' && !values.customer) return fail('a viewer key needs --customer');
      if (values.customer && !/^[A-Za-z0-9_.:-]{1,128}$/.test(values.customer)) return fail('invalid --customer');
      const id = `key_${randomBytes(6).toString('hex')}`;
      const secret = `cf_${role}_${randomBytes(24).toString('base64url')}`;
      await insertApiKey(pool, {
        id,
        keyHash: sha256(secret),
        role,
        customerId: values.customer ?? null,
        name: values.name ?? null,
      });
      process.stdout.write(`${JSON.stringify({ id, role, customerId: values.customer ?? null, key: secret })}\n`);
      return 0;
    }
    if (group === 'keys' && action === 'revoke' && values.id) {
      const r = await pool.query(`UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, [
        values.id,
      ]);
      process.stdout.write(`${JSON.stringify({ id: values.id, revoked: r.rowCount === 1 })}\n`);
      return r.rowCount === 1 ? 0 : 1;
    }
    return fail(USAGE);
  } finally {
    await pool.end();
  }
}

function fail(message: string): number {
  process.stderr.write(`${message}\n`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`error: ${String(err)}\n`);
    process.exit(1);
  },
);
