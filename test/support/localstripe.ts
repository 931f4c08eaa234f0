import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './paths';
import { freePort } from './ports';

/** The venv's interpreter, not its console script: a shebang can point at a dead path. */
const PYTHON = path.join(ROOT, '.tools', 'venv-localstripe', 'bin', 'python');

/**
 * `python -m localstripe` binds every interface (`::`) and pickles its store to the shared
 * /tmp/localstripe.pickle on every write; this runs the same app on 127.0.0.1, in memory only.
 */
const BOOT = `
import sys
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
web.run_app(server.app, host='127.0.0.1', port=int(sys.argv[1]), access_log=None, print=None)
`;

export interface Localstripe {
  url: string;
  stop(): Promise<void>;
}

/** One emulator per test file, on a free port; resolves once it answers HTTP. */
export async function startLocalstripe(): Promise<Localstripe> {
  if (!existsSync(PYTHON)) {
    throw new Error(`${PYTHON} is missing: run npm test (scripts/test.sh installs it via ensure_localstripe)`);
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(PYTHON, ['-c', BOOT, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const stop = () => kill(child);
  try {
    await waitUntilUp(url, child, () => output);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, stop };
}

async function waitUntilUp(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`localstripe exited with ${child.exitCode}:\n${output()}`);
    try {
      const res = await fetch(`${url}/v1/balance`, { headers: { authorization: 'Bearer sk_test_up' } });
      if (res.ok) return;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`localstripe did not answer on ${url} within 20 s:\n${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const hard = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(hard);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
