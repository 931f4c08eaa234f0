import { runCli } from '../../cli/commands';
import type { Pool } from '../../db/pool';
import { call, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  api = await startApi(pool);
});
afterAll(async () => {
  await api.close();
  await db.drop();
});

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, pool, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

describe('keys CLI', () => {
  it('creates a key that authenticates with its role, stores only a hash, and revokes it', async () => {
    const r = await cli('keys', 'create', '--role', 'support', '--name', 'ops');
    expect(r.code).toBe(0);
    const created = JSON.parse(r.out[0]!) as { id: string; key: string; role: string };
    expect(created.role).toBe('support');
    const stored = await pool.query(`SELECT * FROM api_keys WHERE id = $1`, [created.id]);
    expect(JSON.stringify(stored.rows)).not.toContain(created.key);
    expect((await call(api.url, 'POST', '/v1/customers', { key: created.key, json: { id: 'c1' } })).status).toBe(201);
    expect((await cli('keys', 'revoke', '--id', created.id)).code).toBe(0);
    // A fresh API instance has no cache: the revoked key is refused.
    const other = await startApi(pool);
    try {
      expect((await call(other.url, 'GET', '/v1/customers/c1', { key: created.key })).status).toBe(401);
    } finally {
      await other.close();
    }
  });

  it('a viewer key needs a customer and is scoped to it', async () => {
    expect((await cli('keys', 'create', '--role', 'viewer')).code).toBe(2);
    const r = await cli('keys', 'create', '--role', 'viewer', '--customer', 'c1');
    const { key } = JSON.parse(r.out[0]!) as { key: string };
    expect((await call(api.url, 'GET', '/v1/customers/c1', { key })).status).toBe(200);
    expect((await call(api.url, 'GET', '/v1/customers/c2', { key })).status).toBe(403);
  });

  it('refuses unknown roles, flags and commands', async () => {
    expect((await cli('keys', 'create', '--role', 'root')).code).toBe(2);
    expect((await cli('keys', 'create', '--role', 'admin', '--bogus', 'x')).code).toBe(2);
    expect((await cli('nothing')).code).toBe(2);
    expect((await pool.query(`SELECT count(*)::int n FROM api_keys`)).rows[0].n).toBe(2);
  });
});

describe('rate-cards CLI', () => {
  it('loads the shipped example card (YAML) as a new immutable version', async () => {
    const a = await cli('rate-cards', 'load', '--name', 'default', '--file', 'examples/rate-cards/default.yaml');
    expect(a.err).toEqual([]);
    expect(a.code).toBe(0);
    const b = await cli('rate-cards', 'load', '--name', 'default', '--file', 'examples/rate-cards/default.yaml');
    expect(JSON.parse(a.out[0]!)).toMatchObject({ version: 1, rules: 12 });
    expect(JSON.parse(b.out[0]!)).toMatchObject({ version: 2 });
  });

  it('refuses an invalid card file and writes nothing', async () => {
    const before = (await pool.query(`SELECT count(*)::int n FROM rate_cards`)).rows[0].n;
    const r = await cli('rate-cards', 'load', '--name', 'bad', '--file', 'package.json');
    expect(r.code).toBe(2);
    expect((await cli('rate-cards', 'load', '--name', 'x', '--file', '/no/such/file')).code).toBe(2);
    expect((await pool.query(`SELECT count(*)::int n FROM rate_cards`)).rows[0].n).toBe(before);
  });
});
