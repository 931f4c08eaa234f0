import { Writable } from 'node:stream';
import pino from 'pino';
import type { Pool } from '../../db/pool';
import { postWebhook } from '../../webhooks/deliver';
import { urlPolicy } from '../../webhooks/url-policy';
import { call, makeKey, snapshotTables, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { startReceiver } from '../support/webhook-receiver';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let admin: string;
let logs = '';
const started: string[] = [];
const savedEnv = { mode: process.env.CREDITFLOW_MODE, hosts: process.env.WEBHOOK_ALLOWED_HOSTS };

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  // Every log line the API writes, at the most verbose level: the secret must never be in it.
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs += chunk.toString();
      cb();
    },
  });
  api = await startApi(pool, {
    logger: pino({ level: 'trace' }, sink),
    webhooks: (id) => {
      started.push(id);
      // The second start fails (Temporal away): logged, the endpoint is created all the same.
      return started.length === 2 ? Promise.reject(new Error('Temporal away')) : Promise.resolve();
    },
  });
  admin = await makeKey(pool, 'admin');
});
afterAll(async () => {
  process.env.CREDITFLOW_MODE = savedEnv.mode;
  process.env.WEBHOOK_ALLOWED_HOSTS = savedEnv.hosts;
  await api.close();
  await db.drop();
});
beforeEach(() => {
  process.env.CREDITFLOW_MODE = 'production';
  process.env.WEBHOOK_ALLOWED_HOSTS = '';
});

const create = (json: unknown, key = admin) => call(api.url, 'POST', '/v1/webhook-endpoints', { key, json });

describe('webhook endpoints API', () => {
  it('creates an endpoint (secret shown once), starts its delivery, lists, reads, rotates, deletes', async () => {
    const c = await create({
      url: 'https://8.8.8.8/hooks',
      types: ['balance.low', 'topup.failed'],
      description: 'ops',
    });
    expect(c.status).toBe(201);
    expect(c.body).toEqual({
      id: expect.stringMatching(/^we_[0-9a-f]{16}$/),
      url: 'https://8.8.8.8/hooks',
      types: ['balance.low', 'topup.failed'],
      description: 'ops',
      secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]{43}=$/),
      createdAt: expect.any(String),
      deletedAt: null,
    });
    const { id, secret } = c.body as { id: string; secret: string };
    expect(started).toContain(id);

    // Its workflow could not be started: created all the same (the keeper starts it), and logged.
    const all = await create({ url: 'https://8.8.4.4/' });
    expect(all.status).toBe(201);
    expect(all.body.types).toEqual([]); // every type
    expect(logs).toContain(`"endpointId":"${all.body.id}"`);

    const list = await call(api.url, 'GET', '/v1/webhook-endpoints?limit=1', { key: admin });
    expect(list.status).toBe(200);
    expect(list.body.endpoints).toHaveLength(1);
    expect(list.body.endpoints[0].id).toBe(id);
    const next = await call(api.url, 'GET', `/v1/webhook-endpoints?limit=1&cursor=${list.body.nextCursor}`, {
      key: admin,
    });
    expect(next.body.endpoints.map((e: { id: string }) => e.id)).toEqual([all.body.id]);
    expect(next.body.nextCursor).toBeNull();

    const one = await call(api.url, 'GET', `/v1/webhook-endpoints/${id}`, { key: admin });
    expect(one.status).toBe(200);
    expect(one.body.types).toEqual(['balance.low', 'topup.failed']);
    for (const r of [list, next, one]) expect(r.text).not.toContain('whsec_');

    const rot = await call(api.url, 'POST', `/v1/webhook-endpoints/${id}/rotate-secret`, { key: admin, json: {} });
    expect(rot.status).toBe(200);
    expect(rot.body.id).toBe(id);
    expect(rot.body.secret).toMatch(/^whsec_/);
    expect(rot.body.secret).not.toBe(secret);
    const overlap = Date.parse(rot.body.previousSecretExpiresAt) - Date.now();
    expect(overlap).toBeGreaterThan(24 * 3600_000 - 60_000);
    expect(overlap).toBeLessThanOrEqual(24 * 3600_000);
    const row = await pool.query(`SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1`, [id]);
    expect(row.rows[0]).toEqual({ secret: rot.body.secret, previous_secret: secret });

    const del = await call(api.url, 'DELETE', `/v1/webhook-endpoints/${id}`, { key: admin });
    expect(del.status).toBe(200);
    expect(del.body.deletedAt).not.toBeNull();
    const listed = await call(api.url, 'GET', '/v1/webhook-endpoints', { key: admin });
    expect(listed.body.endpoints.map((e: { id: string }) => e.id)).not.toContain(id);
    const again = await call(api.url, 'POST', `/v1/webhook-endpoints/${id}/rotate-secret`, { key: admin, json: {} });
    expect(again.status).toBe(404);
    const deliveries = await call(api.url, 'GET', `/v1/webhook-endpoints/${id}/deliveries`, { key: admin });
    expect(deliveries.status).toBe(200);
    expect(deliveries.body).toEqual({ attempts: [], nextCursor: null });

    // Neither secret ever reached a log line.
    expect(logs).not.toContain(secret.slice(6));
    expect(logs).not.toContain(rot.body.secret.slice(6));
  });

  it.each([
    ['ftp', { url: 'ftp://example.com/x' }, 'body.url'],
    ['no host', { url: 'http://' }, 'body.url'],
    ['credentials', { url: 'https://user:pw@8.8.8.8/' }, 'body.url'],
    ['over 2048 characters', { url: `https://8.8.8.8/${'a'.repeat(2040)}` }, 'body.url'],
    ['not a string', { url: 42 }, 'body.url'],
    ['missing url', {}, 'body.url'],
    ['unknown type', { url: 'https://8.8.8.8/', types: ['balance.low', 'balance.lol'] }, 'body.types.1'],
    ['empty types', { url: 'https://8.8.8.8/', types: [] }, 'body.types'],
    ['unknown field', { url: 'https://8.8.8.8/', secret: 'whsec_x' }, 'body'],
    ['private 192.168.1.1', { url: 'http://192.168.1.1/' }, 'body.url'],
    ['private 10.0.0.1', { url: 'https://10.0.0.1:8443/hook' }, 'body.url'],
    ['loopback 127.0.0.1', { url: 'http://127.0.0.1:9/' }, 'body.url'],
    ['loopback [::1]', { url: 'http://[::1]:9/' }, 'body.url'],
    ['metadata 169.254.169.254', { url: 'http://169.254.169.254/latest/meta-data' }, 'body.url'],
    ['localhost (resolves to loopback)', { url: 'http://localhost:9/' }, 'body.url'],
    ['loopback in hex', { url: 'http://0x7f.1/' }, 'body.url'],
    ['IPv4-mapped loopback', { url: 'http://[::ffff:127.0.0.1]/' }, 'body.url'],
  ])('refuses %s with a 400 problem and writes nothing', async (_label, json, path) => {
    const before = await snapshotTables(pool);
    const r = await create(json);
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(r.body.errors.map((e: { path: string }) => e.path)).toContain(path);
    expect(await snapshotTables(pool)).toEqual(before);
  });

  it('accepts loopback named by WEBHOOK_ALLOWED_HOSTS, and loopback in development mode only', async () => {
    process.env.WEBHOOK_ALLOWED_HOSTS = '127.0.0.1';
    expect((await create({ url: 'http://127.0.0.1:9/hook' })).status).toBe(201);
    expect((await create({ url: 'http://192.168.1.1/' })).status).toBe(400);
    process.env.WEBHOOK_ALLOWED_HOSTS = '';
    process.env.CREDITFLOW_MODE = 'development';
    expect((await create({ url: 'http://127.0.0.1:9/hook' })).status).toBe(201);
    expect((await create({ url: 'http://localhost:9/hook' })).status).toBe(201);
    expect((await create({ url: 'http://10.0.0.1/' })).status).toBe(400);
  });

  it('is admin only: other roles get 403 and write nothing', async () => {
    const c = await create({ url: 'https://8.8.8.8/' });
    const before = await snapshotTables(pool);
    for (const role of ['service', 'support'] as const) {
      const key = await makeKey(pool, role);
      const snap = await snapshotTables(pool);
      expect((await create({ url: 'https://8.8.8.8/' }, key)).status).toBe(403);
      for (const [method, path] of [
        ['GET', '/v1/webhook-endpoints'],
        ['GET', `/v1/webhook-endpoints/${c.body.id}`],
        ['GET', `/v1/webhook-endpoints/${c.body.id}/deliveries`],
        ['DELETE', `/v1/webhook-endpoints/${c.body.id}`],
      ] as const)
        expect((await call(api.url, method, path, { key })).status).toBe(403);
      const rot = await call(api.url, 'POST', `/v1/webhook-endpoints/${c.body.id}/rotate-secret`, { key, json: {} });
      expect(rot.status).toBe(403);
      expect(await snapshotTables(pool)).toEqual(snap);
    }
    expect(before.webhook_endpoints).toBe((await snapshotTables(pool)).webhook_endpoints);
    const gone = await call(api.url, 'GET', '/v1/webhook-endpoints/we_0000000000000000', { key: admin });
    expect(gone.status).toBe(404);
    const bad = await call(api.url, 'GET', '/v1/webhook-endpoints/nope', { key: admin });
    expect(bad.status).toBe(400);
  });
});

describe('one delivery request', () => {
  const allowLoopback = urlPolicy({ CREDITFLOW_MODE: 'production', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' });
  const strict = urlPolicy({ CREDITFLOW_MODE: 'production', WEBHOOK_ALLOWED_HOSTS: '' });

  it('checks the address again when it connects: nothing reaches a refused host', async () => {
    const rx = await startReceiver();
    try {
      for (const url of [rx.url, rx.url.replace('127.0.0.1', 'localhost')]) {
        const r = await postWebhook(new URL(url), '{}', {}, { policy: strict });
        expect(r.statusCode).toBeNull();
        expect(r.error).toMatch(/not in WEBHOOK_ALLOWED_HOSTS/);
      }
      expect(rx.received).toHaveLength(0);
      expect((await postWebhook(new URL(rx.url), '{}', {}, { policy: allowLoopback })).statusCode).toBe(200);
      expect(rx.received).toHaveLength(1);
    } finally {
      await rx.close();
    }
  });

  it('does not follow redirects: a 302 is a failed attempt and its target hears nothing', async () => {
    const target = await startReceiver();
    const rx = await startReceiver((_n, _r, res) => {
      res.writeHead(302, { location: target.url }).end();
      return 'handled';
    });
    try {
      const r = await postWebhook(new URL(rx.url), '{}', {}, { policy: allowLoopback });
      expect(r).toMatchObject({ statusCode: 302, error: 'HTTP 302: redirect not followed' });
      expect(target.received).toHaveLength(0);
    } finally {
      await Promise.all([rx.close(), target.close()]);
    }
  });

  it('reads at most 16 KiB of an endless answer, then hangs up', async () => {
    let written = 0;
    const rx = await startReceiver((_n, _r, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 'x');
      const pump = () => {
        while (!res.destroyed && written < 1024 ** 3) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
      };
      pump();
      return 'handled';
    });
    try {
      const r = await postWebhook(new URL(rx.url), '{}', {}, { policy: allowLoopback });
      expect(r.statusCode).toBe(200);
      expect(r.error).toBeNull();
      expect(r.bytesRead).toBeLessThanOrEqual(16 * 1024 + 64 * 1024);
      await new Promise((res) => setTimeout(res, 200));
      expect(written).toBeLessThan(32 * 1024 * 1024); // the socket was closed: the gigabyte was never sent
    } finally {
      await rx.close();
    }
  });

  it('gives up on a receiver that never answers after the timeout', async () => {
    const rx = await startReceiver(() => 'hang');
    try {
      const t0 = Date.now();
      const r = await postWebhook(new URL(rx.url), '{}', {}, { policy: allowLoopback, timeoutMs: 500 });
      expect(r).toMatchObject({ statusCode: null, error: 'timeout after 500 ms' });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(490);
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      await rx.close();
    }
  });
});
