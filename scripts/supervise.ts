import { spawn, type ChildProcess } from 'node:child_process';
import { createLogger } from '../lib/logger';

/**
 * Keeps long-running node processes up: `node dist/scripts/supervise.js api=dist/api/main.js …`.
 * A child that exits is restarted after a backoff (1 s doubling to 30 s; back to 1 s once a child
 * stayed up 60 s), each restart logged. SIGINT/SIGTERM/SIGHUP stop every child: SIGTERM, then
 * SIGKILL after STOP_TIMEOUT_MS; a second signal kills at once. Then the supervisor exits.
 *
 * Children run in their own process group, so a terminal's Ctrl-C (sent to the whole foreground
 * group) reaches only the supervisor, which stops them — and never mistakes that for a crash.
 */
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
const STABLE_AFTER_MS = 60_000;
const STOP_TIMEOUT_MS = Number(process.env.SUPERVISOR_STOP_TIMEOUT_MS) || 10_000;

const log = createLogger('creditflow-supervisor', process.env.LOG_LEVEL);

interface Child {
  name: string;
  script: string;
  proc?: ChildProcess;
  startedAt: number;
  failures: number;
  restartTimer?: NodeJS.Timeout;
}

const children: Child[] = process.argv.slice(2).map((arg) => {
  const [name, script] = arg.split('=', 2);
  if (!name || !script) throw new Error(`usage: supervise.js name=script.js …  (got ${arg})`);
  return { name, script, startedAt: 0, failures: 0 };
});
let stopping = false;

function start(c: Child): void {
  c.restartTimer = undefined;
  const proc = spawn(process.execPath, [c.script], { stdio: 'inherit', detached: true });
  c.proc = proc;
  c.startedAt = Date.now();
  log.info({ child: c.name, pid: proc.pid }, 'child started');
  let ended = false;
  const onEnd = (code: number | null, signal: NodeJS.Signals | null, err?: Error) => {
    if (ended) return; // 'error' and 'exit' may both fire
    ended = true;
    c.proc = undefined;
    if (stopping) {
      log.info({ child: c.name, pid: proc.pid, code, signal }, 'child stopped');
      if (children.every((x) => !x.proc)) process.exit(0);
      return;
    }
    if (Date.now() - c.startedAt >= STABLE_AFTER_MS) c.failures = 0;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** c.failures);
    c.failures++;
    log.error(
      { child: c.name, pid: proc.pid, code, signal, err: err?.message, restartInMs: delay },
      'child exited; restarting',
    );
    c.restartTimer = setTimeout(() => start(c), delay);
  };
  proc.once('exit', (code, signal) => onEnd(code, signal));
  proc.once('error', (err) => onEnd(null, null, err));
}

/** Signals the child's whole process group (it leads one), falling back to the child alone. */
function signal(c: Child, sig: NodeJS.Signals): void {
  const pid = c.proc?.pid;
  if (!pid) return;
  try {
    process.kill(-pid, sig);
  } catch {
    c.proc?.kill(sig);
  }
}

function stop(sig: NodeJS.Signals): void {
  if (stopping) {
    log.warn({ signal: sig }, 'second signal: killing children now');
    for (const c of children) signal(c, 'SIGKILL');
    return;
  }
  stopping = true;
  log.info({ signal: sig }, 'stopping children');
  for (const c of children) clearTimeout(c.restartTimer);
  if (children.every((c) => !c.proc)) process.exit(0);
  for (const c of children) signal(c, 'SIGTERM');
  setTimeout(() => {
    for (const c of children.filter((x) => x.proc)) {
      log.warn({ child: c.name, pid: c.proc?.pid }, `still running after ${STOP_TIMEOUT_MS} ms; SIGKILL`);
      signal(c, 'SIGKILL');
    }
  }, STOP_TIMEOUT_MS).unref();
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => stop(sig));
if (children.length === 0) throw new Error('usage: supervise.js name=script.js …');
for (const c of children) start(c);
