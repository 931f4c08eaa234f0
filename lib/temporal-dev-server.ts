import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { Connection } from '@temporalio/client';

export interface DevServerOptions {
  /** Path to the `temporal` CLI; when empty, the SDK downloads the dev server (needs internet). */
  bin?: string;
  ip?: string;
  port: number;
  /** Web UI port; omit for a headless server. */
  uiPort?: number;
  /** SQLite file for state that survives restarts; omit for in-memory. */
  dbFile?: string;
  namespace?: string;
  /** Where the server's own output goes. */
  logFile?: string;
  /** Trade durability for speed (tests): SQLite synchronous=OFF. */
  fast?: boolean;
}

export interface DevServer {
  address: string;
  uiUrl: string | null;
  stop(): Promise<void>;
}

export const SEARCH_ATTRIBUTES = { CustomerId: 'Keyword' } as const;

/** Waits until the server answers gRPC, not just until the port is open. */
export async function waitForTemporal(address: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const conn = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await conn.workflowService.getSystemInfo({});
        return;
      } finally {
        await conn.close();
      }
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`Temporal at ${address} did not become ready: ${String(lastError)}`);
}

export async function startTemporalDevServer(o: DevServerOptions): Promise<DevServer> {
  const ip = o.ip ?? '127.0.0.1';
  const namespace = o.namespace ?? 'default';
  const address = `${ip}:${o.port}`;
  const uiUrl = o.uiPort ? `http://${ip}:${o.uiPort}` : null;
  const pragmas = ['journal_mode=WAL', `synchronous=${o.fast ? 'OFF' : 'NORMAL'}`];
  const extraArgs = [
    ...pragmas.flatMap((p) => ['--sqlite-pragma', p]),
    ...Object.entries(SEARCH_ATTRIBUTES).flatMap(([k, v]) => ['--search-attribute', `${k}=${v}`]),
  ];
  if (!o.bin) return startWithSdkDownload(o, ip, namespace, extraArgs, uiUrl);

  const args = ['server', 'start-dev', '--ip', ip, '--port', String(o.port), '--namespace', namespace];
  args.push(...(o.uiPort ? ['--ui-port', String(o.uiPort), '--ui-ip', ip] : ['--headless']));
  if (o.dbFile) args.push('--db-filename', o.dbFile);
  args.push('--log-level', 'warn', ...extraArgs);
  const child = spawn(o.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (o.logFile) {
    const out = createWriteStream(o.logFile, { flags: 'a' });
    child.stdout.pipe(out);
    child.stderr.pipe(out);
  } else {
    child.stdout.resume();
    child.stderr.resume();
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const early = exited.then((code) => {
    throw new Error(`temporal dev server exited early (code ${code}); see ${o.logFile ?? 'its output'}`);
  });
  await Promise.race([waitForTemporal(address), early]);
  early.catch(() => undefined);
  return { address, uiUrl, stop: () => stopChild(child, exited) };
}

async function stopChild(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The laptop path: the SDK downloads and runs the dev server itself. */
async function startWithSdkDownload(
  o: DevServerOptions,
  ip: string,
  namespace: string,
  extraArgs: string[],
  uiUrl: string | null,
): Promise<DevServer> {
  const { TestWorkflowEnvironment } = await import('@temporalio/testing');
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      ip,
      port: o.port,
      namespace,
      ui: Boolean(o.uiPort),
      uiPort: o.uiPort,
      dbFilename: o.dbFile,
      extraArgs: extraArgs.filter((a, i, all) => a !== '--search-attribute' && all[i - 1] !== '--search-attribute'),
      searchAttributes: [],
    },
  });
  // Search attributes are registered through the operator API on this path.
  await env.connection.operatorService
    .addSearchAttributes({ namespace, searchAttributes: { CustomerId: 2 /* KEYWORD */ } })
    .catch(() => undefined);
  return { address: env.address, uiUrl, stop: () => env.teardown() };
}
