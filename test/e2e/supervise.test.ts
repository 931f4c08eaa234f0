import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, TEST_DATA } from '../support/paths';

/** scripts/supervise.ts (compiled) with stand-in children: backoff, stop on a signal, SIGKILL bound. */
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(TEST_DATA, 'supervise-'));
  writeFileSync(path.join(dir, 'crash.js'), 'setTimeout(() => process.exit(3), 50);');
  writeFileSync(
    path.join(dir, 'good.js'),
    `process.on('SIGTERM', () => process.exit(0)); setInterval(() => {}, 1000);`,
  );
  writeFileSync(path.join(dir, 'stubborn.js'), `process.on('SIGTERM', () => {}); setInterval(() => {}, 1000);`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function supervise(children: string[], env: Record<string, string> = {}) {
  const proc = spawn(
    process.execPath,
    [path.join(ROOT, 'dist/scripts/supervise.js'), ...children.map((c) => `${c}=${path.join(dir, `${c}.js`)}`)],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'], detached: true },
  );
  const lines: { msg: string; child?: string; pid?: number; restartInMs?: number; signal?: string }[] = [];
  let buf = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) lines.push(JSON.parse(l) as (typeof lines)[number]);
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, lines, exited };
}
const until = async (what: () => boolean, ms: number) => {
  const deadline = Date.now() + ms;
  while (!what()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
};
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

it('restarts a crashing child with doubling delays, and SIGTERM cancels the pending restart', async () => {
  const s = supervise(['crash']);
  const restarts = () => s.lines.filter((l) => l.msg === 'child exited; restarting');
  await until(() => restarts().length >= 3, 15_000);
  expect(restarts().map((l) => l.restartInMs)).toEqual([1000, 2000, 4000]);
  const started = s.lines.filter((l) => l.msg === 'child started').length;
  const t0 = Date.now();
  s.proc.kill('SIGTERM');
  expect(await s.exited).toBe(0);
  expect(Date.now() - t0).toBeLessThan(2000); // did not wait for the 4 s restart
  expect(s.lines.filter((l) => l.msg === 'child started').length).toBe(started);
}, 30_000);

it('Ctrl-C to the whole process group stops every child, SIGKILLs one ignoring SIGTERM, restarts none', async () => {
  const s = supervise(['good', 'stubborn'], { SUPERVISOR_STOP_TIMEOUT_MS: '1500' });
  await until(() => s.lines.filter((l) => l.msg === 'child started').length === 2, 10_000);
  await new Promise((r) => setTimeout(r, 500)); // let the children install their handlers
  const pids = s.lines.filter((l) => l.msg === 'child started').map((l) => l.pid!);
  const t0 = Date.now();
  process.kill(-s.proc.pid!, 'SIGINT'); // what a terminal does on Ctrl-C
  expect(await s.exited).toBe(0);
  expect(Date.now() - t0).toBeLessThan(5000);
  const stopped = s.lines.filter((l) => l.msg === 'child stopped');
  expect(stopped.map((l) => [l.child, l.signal ?? null]).sort()).toEqual([
    ['good', null],
    ['stubborn', 'SIGKILL'],
  ]);
  expect(s.lines.some((l) => l.msg === 'child exited; restarting')).toBe(false);
  for (const pid of pids) expect(alive(pid)).toBe(false);
}, 30_000);
