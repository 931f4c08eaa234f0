import { fork, spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** Shared helpers for benchmarks: latency stats, an API child process, RSS sampling. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function stats(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
}

export const fmt = (n: number, digits = 1) => n.toLocaleString('en-US', { maximumFractionDigits: digits });

/** Fields of /proc/<pid>/stat after "pid (comm) " (comm may itself contain ") "). */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
}

/** CPU seconds (user + system) used so far by processes whose command line matches. */
export function cpuSeconds(match: (cmdline: string, pid: number) => boolean): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (!match(cmd, Number(entry))) continue;
      const fields = statFields(Number(entry));
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      /* process went away */
    }
  }
  return ticks / 100;
}

/** The PID of a Postgres cluster's postmaster (first line of its postmaster.pid). */
export function postmasterPid(dataDir: string): number {
  return Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

/**
 * CPU seconds used so far by one Postgres cluster only: its postmaster, its live children, and
 * (through the postmaster's cutime/cstime) the children it has already reaped, so backends that
 * exit between two readings still count. Other clusters on the machine are not included.
 */
export function clusterCpuSeconds(postmaster: number): number {
  const own = statFields(postmaster);
  // utime, stime, cutime, cstime are fields 14-17 of /proc/<pid>/stat (11-14 after "pid (comm) ").
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = statFields(Number(entry));
      if (Number(fields[1]) !== postmaster) continue; // field 4: ppid
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      /* process went away */
    }
  }
  return ticks / 100;
}

export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

const children = new Set<ChildProcess>();
process.on('exit', () => children.forEach((c) => c.kill('SIGTERM')));

/** Ends `child` with the bench, also when the bench fails (an orphaned worker would keep polling). */
export function ownChild(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export async function startApiProcess(env: Record<string, string>, port: number): Promise<ChildProcess> {
  const child = ownChild(
    spawn(process.execPath, ['dist/api/main.js'], {
      env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'inherit', 'inherit'],
    }),
  );
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return child;
    } catch {
      /* starting */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill();
  throw new Error('API did not start');
}

/** Runs `worker` on `concurrency` loops until `seconds` pass; returns per-call latencies (ms). */
export async function closedLoop(concurrency: number, seconds: number, worker: (client: number) => Promise<void>) {
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, c) => {
      while (performance.now() < deadline) {
        const t = performance.now();
        await worker(c);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { latencies, elapsed: (performance.now() - started) / 1000 };
}

/**
 * Open loop: starts `rate` calls per second on a fixed schedule regardless of how long each takes.
 * Latency is measured from the moment a call is sent; `lag` reports how late the load generator
 * itself sent calls (its own pauses), so the two are not confused.
 */
export async function openLoop(rate: number, seconds: number, call: () => Promise<void>) {
  const latencies: number[] = [];
  const lags: number[] = [];
  const pending: Promise<void>[] = [];
  const start = performance.now();
  const total = rate * seconds;
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const sent = performance.now();
    lags.push(Math.max(0, sent - due));
    pending.push(
      call().then(() => {
        latencies.push(performance.now() - sent);
      }),
    );
  }
  await Promise.all(pending);
  return { latencies, lags, elapsed: (performance.now() - start) / 1000 };
}

/** Server-side view from /metrics (cumulative): a route's 200 responses at or under `le` seconds, and all of them. */
export async function serverCounts(base: string, route: string, le: string): Promise<{ under: number; total: number }> {
  const lines = (await (await fetch(`${base}/metrics`)).text())
    .split('\n')
    .filter((l) => l.includes(`route="${route}"`) && l.includes('status="200"'));
  const value = (l: string | undefined) => Number(l?.split(' ').at(-1) ?? 0);
  return {
    under: value(lines.find((l) => l.includes('_bucket{') && l.includes(`le="${le}"`))),
    total: value(lines.find((l) => l.includes('_count{'))),
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** A lean keep-alive POST (lower client overhead than fetch, for latency measurements). */
export function postJson(url: string, headers: Record<string, string>, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Forks the reference worker (dist/bench/reference-worker.js) and waits until it polls. */
export async function startReferenceWorker(env: Record<string, string>): Promise<ChildProcess> {
  const child = ownChild(
    fork(path.join(__dirname, 'reference-worker.js'), {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`reference worker exited (${code})`)));
  });
  return child;
}
