import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../support/ports';
import { ROOT, TEST_DATA } from '../support/paths';

/**
 * `npm start` end to end: the real script brings up Postgres, the Temporal dev server with its UI,
 * migrations, worker and API; SIGTERM stops all of it; a second start reuses the same data.
 */
const DEV_KEY = 'cf_dev_admin_key_for_local_use_only';
let output = '';
const tail = () => output.split('\n').slice(-25).join('\n');

async function waitFor(url: string, ok: (status: number) => boolean, ms: number, proc: ChildProcess): Promise<number> {
  const deadline = Date.now() + ms;
  let last = 0;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`start.sh exited early with ${proc.exitCode}:\n${tail()}`);
    try {
      last = (await fetch(url)).status;
      if (ok(last)) return last;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${url} not ready in ${ms} ms (last status ${last}):\n${tail()}`);
}

async function portClosed(port: number): Promise<boolean> {
  try {
    await fetch(`http://127.0.0.1:${port}/`);
    return false;
  } catch {
    return true;
  }
}

describe('npm start', () => {
  let dataDir: string;
  let ports: { api: number; temporal: number; ui: number; pg: number };

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(TEST_DATA, 'start-'));
    chmodSync(dataDir, 0o755); // the cluster runs as the postgres user when tests run as root
    ports = { api: await freePort(), temporal: await freePort(), ui: await freePort(), pg: await freePort() };
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  const start = () => {
    const proc = spawn('bash', [path.join(ROOT, 'scripts/start.sh')], {
      cwd: ROOT,
      env: {
        ...process.env,
        PORT: String(ports.api),
        TEMPORAL_PORT: String(ports.temporal),
        TEMPORAL_UI_PORT: String(ports.ui),
        CREDITFLOW_PG_PORT: String(ports.pg),
        CREDITFLOW_DATA_DIR: dataDir,
        DATABASE_URL: '',
        TEMPORAL_ADDRESS: '',
        CREDITFLOW_MODE: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
    return proc;
  };
  const stop = async (proc: ChildProcess) => {
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
  };
  const api = (p: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${ports.api}${p}`, {
      ...init,
      headers: { authorization: `Bearer ${DEV_KEY}`, 'content-type': 'application/json', ...init.headers },
    });

  it('serves /readyz and the Temporal UI, stops on SIGTERM, and restarts on the same data', async () => {
    const first = start();
    try {
      await waitFor(`http://127.0.0.1:${ports.api}/readyz`, (s) => s === 200, 150_000, first);
      expect(await waitFor(`http://127.0.0.1:${ports.ui}/`, (s) => s === 200, 30_000, first)).toBe(200);
      expect((await api('/v1/customers', { method: 'POST', body: JSON.stringify({ id: 'e2e' }) })).status).toBe(201);
      const grant = await api('/v1/customers/e2e/grants', {
        method: 'POST',
        headers: { 'idempotency-key': 'e2e-1' },
        body: JSON.stringify({ amount: '42', kind: 'promotional' }),
      });
      expect(grant.status).toBe(201);
    } finally {
      await stop(first);
    }
    expect(output).toContain('stopped');
    expect(await portClosed(ports.api)).toBe(true);
    expect(await portClosed(ports.ui)).toBe(true);

    const second = start();
    try {
      await waitFor(`http://127.0.0.1:${ports.api}/readyz`, (s) => s === 200, 150_000, second);
      const bal = (await (await api('/v1/customers/e2e/balance')).json()) as { available: string };
      expect(bal.available).toBe('42');
    } finally {
      await stop(second);
    }
  }, 400_000);
});
