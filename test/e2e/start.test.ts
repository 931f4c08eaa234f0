import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../support/ports';
import { ROOT, TEST_DATA } from '../support/paths';
import { eventually } from '../support/eventually';

/**
 * `npm start` end to end: the real script brings up Postgres, the Temporal dev server with its UI,
 * migrations, and the worker and API under the supervisor; a SIGKILLed API comes back; SIGTERM —
 * with a request in flight, or during start-up — stops every process it started; a second start
 * reuses the same data.
 */
const DEV_KEY = 'cf_dev_admin_key_for_local_use_only';
let output = '';
const tail = () => output.split('\n').slice(-60).join('\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(
  what: () => T | undefined | Promise<T | undefined>,
  ms: number,
  label: string,
  every = 250,
): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await what();
    if (v !== undefined) return v;
    await sleep(every);
  }
  throw new Error(`${label}: not within ${ms} ms:\n${tail()}`);
}

async function waitFor(url: string, ok: (status: number) => boolean, ms: number, proc: ChildProcess): Promise<number> {
  return until(
    async () => {
      if (proc.exitCode !== null) throw new Error(`start.sh exited early with ${proc.exitCode}:\n${tail()}`);
      const status = await fetch(url).then(
        (r) => r.status,
        () => 0,
      );
      return ok(status) ? status : undefined;
    },
    ms,
    url,
  );
}

/** A TCP connect, not HTTP: the Postgres and Temporal ports do not speak HTTP. */
function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Every live process started by this start.sh: they all inherit its CREDITFLOW_DATA_DIR (a fresh
 * directory per test), including the ones that daemonize (Postgres). Zombies count as gone.
 */
function processesOf(dataDir: string): { pid: number; cmd: string }[] {
  const found: { pid: number; cmd: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0');
      if (!env.includes(`CREDITFLOW_DATA_DIR=${dataDir}`)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      found.push({ pid: Number(entry), cmd: readFileSync(`/proc/${entry}/cmdline`, 'latin1').replace(/\0/g, ' ') });
    } catch {
      /* gone meanwhile, or not ours to read */
    }
  }
  return found;
}

/** pids from the supervisor's "child started" lines, oldest first. */
function childPids(name: string): number[] {
  return output
    .split('\n')
    .filter((l) => l.includes('"msg":"child started"') && l.includes(`"child":"${name}"`))
    .map((l) => (JSON.parse(l) as { pid: number }).pid);
}

describe('npm start', () => {
  let dataDir: string;
  let ports: Record<'api' | 'temporal' | 'ui' | 'pg' | 'kafka' | 'kafkaController' | 'consumer', number>;

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(TEST_DATA, 'start-'));
    chmodSync(dataDir, 0o755); // the cluster runs as the postgres user when tests run as root
    ports = {
      api: await freePort(),
      temporal: await freePort(),
      ui: await freePort(),
      pg: await freePort(),
      kafka: await freePort(),
      // its own free port: KAFKA_PORT + 1 (the default) may be another test's at that moment
      kafkaController: await freePort(),
      consumer: await freePort(),
    };
  });
  afterAll(() => {
    for (const p of processesOf(dataDir)) process.kill(p.pid, 'SIGKILL'); // only after a failure
    rmSync(dataDir, { recursive: true, force: true });
  });

  const start = (extra: Record<string, string> = {}) => {
    output = '';
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
        INGEST_KAFKA: '',
        KAFKA_PORT: String(ports.kafka),
        KAFKA_CONTROLLER_PORT: String(ports.kafkaController),
        KAFKA_BROKERS: '',
        CONSUMER_METRICS_PORT: String(ports.consumer),
        ...extra,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, as in a terminal
    });
    proc.stdout.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (output += d.toString()));
    return proc;
  };
  /** SIGTERM, or Ctrl-C as a terminal sends it (SIGINT to the whole group); resolves with the time to exit. */
  const stop = async (proc: ChildProcess, how: 'SIGTERM' | 'Ctrl-C' = 'SIGTERM'): Promise<number> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return 0;
    const exited = new Promise((r) => proc.once('exit', r));
    const t0 = Date.now();
    if (how === 'Ctrl-C') process.kill(-proc.pid!, 'SIGINT');
    else proc.kill('SIGTERM');
    await exited;
    return Date.now() - t0;
  };
  const api = (p: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${ports.api}${p}`, {
      ...init,
      headers: { authorization: `Bearer ${DEV_KEY}`, 'content-type': 'application/json', ...init.headers },
    });
  const expectAllGone = async () => {
    expect(output).toContain('stopped');
    expect(processesOf(dataDir)).toEqual([]);
    for (const port of Object.values(ports)) expect(await portOpen(port)).toBe(false);
  };

  it('serves /readyz and the UI, restarts a killed API, and SIGTERM with a request in flight stops it all', async () => {
    const first = start();
    const locker = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${ports.pg}/creditflow` });
    locker.on('error', () => undefined); // Postgres stops under it
    try {
      await waitFor(`http://127.0.0.1:${ports.api}/readyz`, (s) => s === 200, 150_000, first);
      expect(await waitFor(`http://127.0.0.1:${ports.ui}/`, (s) => s === 200, 30_000, first)).toBe(200);
      // A newcomer's one step to the portal: the printed link opens the demo customer's page, and its
      // token reads that customer's balance.
      const link = await eventually(
        () => Promise.resolve(/portal +(http:\/\/\S+\/portal\?token=(\S+))/.exec(output)),
        (m) => m !== null,
        30_000,
      );
      expect((await fetch(link![1]!)).status).toBe(200);
      const demo = await fetch(`http://127.0.0.1:${ports.api}/v1/customers/demo/balance`, {
        headers: { authorization: `Bearer ${decodeURIComponent(link![2]!)}` },
      });
      expect(demo.status).toBe(200);
      expect((await api('/v1/customers', { method: 'POST', body: JSON.stringify({ id: 'e2e' }) })).status).toBe(201);
      const grant = await api('/v1/customers/e2e/grants', {
        method: 'POST',
        headers: { 'idempotency-key': 'e2e-1' },
        body: JSON.stringify({ amount: '42', kind: 'promotional' }),
      });
      expect(grant.status).toBe(201);

      // A crashed API is restarted by the supervisor (and the restart logged), not the stack torn down.
      const [apiPid] = childPids('api');
      process.kill(apiPid!, 'SIGKILL');
      const newPid = await until(() => childPids('api').find((p) => p !== apiPid), 20_000, 'API restart');
      expect(output).toMatch(new RegExp(`"child":"api","pid":${apiPid},"code":null,"signal":"SIGKILL".*restarting`));
      await waitFor(`http://127.0.0.1:${ports.api}/readyz`, (s) => s === 200, 30_000, first);
      expect(childPids('api')).toEqual([apiPid, newPid]);
      expect(first.exitCode).toBeNull();

      // Not vacuous: the process scan sees the whole stack before it is stopped.
      const cmds = processesOf(dataDir).map((p) => p.cmd);
      for (const part of ['supervise.js', 'dist/api/main.js', 'dist/worker/main.js', 'temporal-server.js', 'postgres'])
        expect(cmds.some((c) => c.includes(part))).toBe(true);

      // A request stuck on a lock is in flight when SIGTERM arrives.
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE wallets IN ACCESS EXCLUSIVE MODE');
      const stuck = api('/v1/customers/e2e/balance').then(
        (r) => r.status,
        () => 0,
      );
      const waiting = await until(
        async () => {
          const r = await locker.query<{ usename: string }>(
            `SELECT usename FROM pg_stat_activity WHERE wait_event_type = 'Lock'`,
          );
          return r.rowCount! > 0 ? r.rows.map((x) => x.usename) : undefined;
        },
        10_000,
        'request waiting on the lock',
      );
      expect(waiting).toEqual(['creditflow_app']); // the API connects as the least-privileged role
      expect(await stop(first)).toBeLessThan(30_000);
      expect(await stuck).not.toBe(200);
    } finally {
      await stop(first);
      await locker.end().catch(() => undefined);
    }
    await expectAllGone();
  }, 240_000);

  it('restarts on the same data; Ctrl-C stops it all', async () => {
    const second = start();
    try {
      await waitFor(`http://127.0.0.1:${ports.api}/readyz`, (s) => s === 200, 150_000, second);
      const bal = (await (await api('/v1/customers/e2e/balance')).json()) as { available: string };
      expect(bal.available).toBe('42');
    } finally {
      expect(await stop(second, 'Ctrl-C')).toBeLessThan(30_000);
    }
    await expectAllGone();
  }, 200_000);

  it('stops everything it started when SIGTERM arrives during start-up', async () => {
    const third = start();
    try {
      // Postgres is up and the Temporal CLI is running, but its launcher is not ready (no signal
      // handler yet): the moment where killing only the launcher would orphan the CLI.
      const launched = () => processesOf(dataDir).some((p) => p.cmd.includes('start-dev'));
      await until(() => (launched() ? true : undefined), 120_000, 'Temporal CLI start', 20);
      expect(output).toContain('PostgreSQL listening');
      expect(output).not.toContain('Temporal dev server ready');
    } finally {
      expect(await stop(third)).toBeLessThan(30_000);
    }
    expect(output).not.toContain('creditflow is up');
    await expectAllGone();
  }, 200_000);

  it('INGEST_KAFKA=1 also runs a Kafka broker and the consumer: a produced event moves the balance; SIGTERM stops the broker too', async () => {
    const fourth = start({ INGEST_KAFKA: '1' });
    try {
      await waitFor(`http://127.0.0.1:${ports.api}/readyz`, (s) => s === 200, 150_000, fourth);
      await waitFor(`http://127.0.0.1:${ports.consumer}/healthz`, (s) => s === 200, 60_000, fourth);
      expect(output).toContain(`Kafka        127.0.0.1:${ports.kafka}`);
      const cmds = processesOf(dataDir).map((p) => p.cmd);
      for (const part of ['kafka.Kafka', 'dist/ingest/consumer.js'])
        expect(cmds.some((c) => c.includes(part))).toBe(true);
      // 1,500 large-model output tokens at 6 credits per 1,000 (examples/rate-cards/default.yaml): 9 credits.
      const produced = spawn(process.execPath, [path.join(ROOT, 'dist/ingest/kafka-tool.js'), 'produce'], {
        env: { ...process.env, KAFKA_BROKERS: `127.0.0.1:${ports.kafka}` },
        stdio: ['pipe', 'ignore', 'inherit'],
      });
      produced.stdin.end(
        JSON.stringify({
          id: 'kafka-1',
          customerId: 'e2e',
          meter: 'llm.output_tokens',
          quantity: '1500',
          dimensions: { model: 'large' },
        }),
      );
      expect(await new Promise((r) => produced.once('exit', r))).toBe(0);
      const balance = async () =>
        ((await (await api('/v1/customers/e2e/balance')).json()) as { available: string }).available;
      expect(await until(async () => ((await balance()) === '33' ? '33' : undefined), 30_000, 'debit')).toBe('33');
    } finally {
      expect(await stop(fourth)).toBeLessThan(40_000);
    }
    await expectAllGone();
  }, 240_000);
});
