import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Pool } from '../../db/pool';
import { revokeApiKey } from '../../db/api-keys';
import { sha256 } from '../../lib/hash';
import { call, makeKey, snapshotTables, startApi, type Call, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { ROOT } from '../support/paths';
import { freePort } from '../support/ports';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
const keys: Record<string, string> = {};

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  api = await startApi(pool);
  keys.admin = await makeKey(pool, 'admin');
  keys.service = await makeKey(pool, 'service');
  keys.support = await makeKey(pool, 'support');
  expect((await call(api.url, 'POST', '/v1/customers', { key: keys.admin, json: { id: 'cust-k' } })).status).toBe(201);
  keys.viewer = await makeKey(pool, 'viewer', 'cust-k');
});
afterAll(async () => {
  await api.close();
  await db.drop();
});

function expectProblem(r: Call, status: number) {
  expect({ status: r.status, problemStatus: r.body?.status }).toEqual({ status, problemStatus: status });
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
}

const create = (json: unknown, base = api.url, key = keys.admin) => call(base, 'POST', '/v1/api-keys', { key, json });
const customer = (key: string, base = api.url) => call(base, 'GET', '/v1/customers/cust-k', { key });

describe('create, list, revoke', () => {
  it('creates a key shown once, stored only as its sha256, that works at once with its role', async () => {
    const r = await create({ role: 'viewer', customerId: 'cust-k', name: 'mobile app' });
    expect(r.status).toBe(201);
    expect(r.body).toEqual({
      id: expect.stringMatching(/^key_/),
      key: expect.any(String),
      role: 'viewer',
      customerId: 'cust-k',
      name: 'mobile app',
      createdAt: expect.any(String),
      revokedAt: null,
    });
    const stored = await pool.query(`SELECT * FROM api_keys WHERE id = $1`, [r.body.id]);
    expect(stored.rows[0].key_hash).toBe(sha256(r.body.key));
    expect(JSON.stringify(stored.rows[0])).not.toContain(r.body.key);
    expect((await customer(r.body.key)).status).toBe(200);
    // scoped to its customer, read-only
    expectProblem(await call(api.url, 'GET', '/v1/customers/other', { key: r.body.key }), 403);
    expectProblem(await create({ role: 'admin' }, api.url, r.body.key), 403);
  });

  it('lists every key in pages, never a secret or a hash', async () => {
    const made: { id: string; key: string }[] = [];
    for (let i = 0; i < 5; i++) made.push((await create({ role: 'service', name: `svc ${i}` })).body);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Call = await call(api.url, 'GET', `/v1/api-keys?limit=2${cursor ? `&cursor=${cursor}` : ''}`, {
        key: keys.admin,
      });
      expect(page.status).toBe(200);
      expect(page.body.keys.length).toBeLessThanOrEqual(2);
      for (const k of page.body.keys) {
        expect(Object.keys(k).sort()).toEqual(['createdAt', 'customerId', 'id', 'name', 'revokedAt', 'role']);
        seen.push(k.id);
      }
      for (const m of made) {
        expect(page.text).not.toContain(m.key);
        expect(page.text).not.toContain(sha256(m.key));
      }
      cursor = page.body.nextCursor;
    } while (cursor);
    const all = await pool.query<{ id: string }>(`SELECT id FROM api_keys ORDER BY created_at, id`);
    expect(seen).toEqual(all.rows.map((r) => r.id));
  });

  it('revoke → 200 and the key is refused on its next request; again → same revokedAt; unknown → 404', async () => {
    const k = (await create({ role: 'support' })).body;
    expect((await customer(k.key)).status).toBe(200);
    const r = await call(api.url, 'DELETE', `/v1/api-keys/${k.id}`, { key: keys.admin });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: k.id, role: 'support', revokedAt: expect.any(String) });
    expectProblem(await customer(k.key), 401);
    const again = await call(api.url, 'DELETE', `/v1/api-keys/${k.id}`, { key: keys.admin });
    expect(again.body.revokedAt).toBe(r.body.revokedAt);
    const list = await call(api.url, 'GET', '/v1/api-keys?limit=500', { key: keys.admin });
    expect(list.body.keys.find((x: { id: string }) => x.id === k.id).revokedAt).toBe(r.body.revokedAt);
    expectProblem(await call(api.url, 'DELETE', '/v1/api-keys/key_nope', { key: keys.admin }), 404);
  });

  it('a key revoked out of band (the CLI) is refused at once by a process that just accepted it', async () => {
    const k = (await create({ role: 'service' })).body;
    expect((await customer(k.key)).status).toBe(200);
    await revokeApiKey(pool, k.id);
    expectProblem(await customer(k.key), 401);
  });
});

describe('only admins, only valid bodies', () => {
  it.each(['service', 'support', 'viewer'])('a %s key → 403 on every endpoint, nothing written', async (role) => {
    const before = await snapshotTables(pool);
    expectProblem(await create({ role: 'admin' }, api.url, keys[role]), 403);
    expectProblem(await call(api.url, 'GET', '/v1/api-keys', { key: keys[role] }), 403);
    expectProblem(await call(api.url, 'DELETE', `/v1/api-keys/${keys.admin}`, { key: keys[role] }), 403);
    expect(await snapshotTables(pool)).toEqual(before);
    expect((await customer(keys.admin!)).status).toBe(200);
  });

  it.each([
    ['no role', 'body.role', {}],
    ['an unknown role', 'body.role', { role: 'root' }],
    ['a viewer without a customer', 'body.customerId', { role: 'viewer' }],
    ['a bad customer id', 'body.customerId', { role: 'service', customerId: 'has space' }],
    ['an empty name', 'body.name', { role: 'service', name: '' }],
    ['a long name', 'body.name', { role: 'service', name: 'x'.repeat(201) }],
    ['an unknown field', 'body', { role: 'service', keyHash: 'abc' }],
    ['a role that is not a string', 'body.role', { role: 1 }],
  ])('%s → 400 naming %s', async (_n, where, json) => {
    const before = await snapshotTables(pool);
    const r = await create(json);
    expectProblem(r, 400);
    expect(r.body.errors[0].path).toBe(where);
    expect(await snapshotTables(pool)).toEqual(before);
  });

  it('a key for a customer that does not exist → 404', async () => {
    expectProblem(await create({ role: 'viewer', customerId: 'nobody' }), 404);
  });

  it('list limit out of range → 400', async () => {
    for (const q of ['limit=0', 'limit=501', 'limit=x', 'unknown=1'])
      expectProblem(await call(api.url, 'GET', `/v1/api-keys?${q}`, { key: keys.admin }), 400);
  });
});

/** Two real API processes (dist/api/main.js) on one database: no process may trust a key the other revoked. */
describe('revocation across processes', () => {
  const procs: ChildProcess[] = [];
  const urls: string[] = [];
  const adminKey = `adm_${randomBytes(18).toString('hex')}`;
  let output = '';

  async function spawnApi(): Promise<string> {
    const port = await freePort();
    const proc = spawn(process.execPath, [path.join(ROOT, 'dist/api/main.js')], {
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        DATABASE_URL: db.url,
        DATABASE_POOL_SIZE: '4',
        CREDITFLOW_MODE: 'production',
        CREDITFLOW_ADMIN_KEY: adminKey,
        TEMPORAL_ADDRESS: process.env.TEST_TEMPORAL_ADDRESS ?? '127.0.0.1:1',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
    procs.push(proc);
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`API exited with ${proc.exitCode}:\n${output}`);
      try {
        if ((await fetch(`${url}/healthz`)).ok) return url;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`API not up in 20 s:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  beforeAll(async () => {
    urls.push(await spawnApi(), await spawnApi());
  });
  afterAll(async () => {
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null) return resolve();
            p.once('exit', () => resolve());
            p.kill('SIGTERM');
          }),
      ),
    );
  });

  it('a key revoked through one process is refused (401) by the other on its very next request', async () => {
    for (let i = 0; i < 4; i++) {
      const [via, other] = i % 2 === 0 ? [urls[0]!, urls[1]!] : [urls[1]!, urls[0]!];
      const k = (await create({ role: 'service', name: `cross ${i}` }, via, adminKey)).body;
      // Both processes have accepted the key (and would have cached it, had they a cache).
      for (let j = 0; j < 3; j++) {
        expect((await customer(k.key, other)).status).toBe(200);
        expect((await customer(k.key, via)).status).toBe(200);
      }
      expect((await call(via, 'DELETE', `/v1/api-keys/${k.id}`, { key: adminKey })).status).toBe(200);
      expectProblem(await customer(k.key, other), 401);
      expectProblem(await customer(k.key, via), 401);
    }
  });
});
