import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createApp, type AppDeps } from '../../api/app';
import { insertApiKey, type Role } from '../../db/api-keys';
import type { Pool } from '../../db/pool';
import { Ledger } from '../../ledger/ledger';
import { sha256 } from '../../lib/hash';
import { createLogger } from '../../lib/logger';

export interface TestApi {
  url: string;
  close: () => Promise<void>;
}

export async function startApi(pool: Pool, extra: Partial<AppDeps> = {}): Promise<TestApi> {
  const app = createApp({
    pool,
    ledger: new Ledger(pool),
    logger: createLogger('test-api', 'silent'),
    temporalReady: () => Promise.resolve(),
    ...extra,
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export async function makeKey(pool: Pool, role: Role, customerId: string | null = null): Promise<string> {
  const secret = `test_${role}_${Math.random().toString(36).slice(2)}_${Date.now()}`;
  await insertApiKey(pool, { id: secret, keyHash: sha256(secret), role, customerId, name: null });
  return secret;
}

export interface Call {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

export async function call(
  base: string,
  method: string,
  path: string,
  o: {
    key?: string;
    json?: unknown;
    raw?: string | Uint8Array;
    contentType?: string;
    headers?: Record<string, string>;
  } = {},
): Promise<Call> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.key) headers.authorization = `Bearer ${o.key}`;
  let body: string | Uint8Array | undefined;
  if (o.raw !== undefined) body = o.raw;
  else if (o.json !== undefined) body = JSON.stringify(o.json);
  if (body !== undefined) headers['content-type'] = o.contentType ?? 'application/json';
  const res = await fetch(base + path, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/** Row counts of every table, and Σ wallet versions: equal before and after means a request wrote nothing. */
export async function snapshotTables(pool: Pool): Promise<Record<string, string>> {
  const tables = await pool.query<{ t: string }>(
    `SELECT quote_ident(table_name) AS t FROM information_schema.tables
      WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1`,
  );
  const counts = tables.rows.map(({ t }) => `(SELECT count(*) FROM ${t})::text AS ${t}`);
  const r = await pool.query<Record<string, string>>(
    `SELECT ${counts.join(', ')}, (SELECT coalesce(sum(version), 0)::text FROM wallets) AS wallet_versions`,
  );
  return r.rows[0]!;
}

/** The default rate card most tests meter against: 1 credit per 1,000 `tokens`. Asserts it was published. */
export async function putTokensRateCard(apiUrl: string, adminKey: string): Promise<void> {
  const card = await call(apiUrl, 'PUT', '/v1/rate-cards/default', {
    key: adminKey,
    json: { effectiveFrom: '2026-01-01T00:00:00Z', rules: [{ meter: 'tokens', credits: '1', per: 1000 }] },
  });
  expect(card.status).toBe(201);
}
