import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { freePort } from './ports';
import { ROOT } from './paths';

export interface ApiProcess {
  proc: ChildProcess;
  url: string;
  output: () => string;
  stop: () => Promise<void>;
}

/** The real API process (dist/api/main.js), up once /healthz answers. */
export async function spawnApiProcess(env: Record<string, string>): Promise<ApiProcess> {
  const port = await freePort();
  const proc = spawn(process.execPath, [path.join(ROOT, 'dist/api/main.js')], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const grab = (d: Buffer) => (output = (output + d.toString()).slice(-8000));
  proc.stdout.on('data', grab);
  proc.stderr.on('data', grab);
  const url = `http://127.0.0.1:${port}`;
  const stop = () =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGTERM');
    });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`API exited with ${proc.exitCode}:\n${output}`);
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return { proc, url, output: () => output, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`API not up in 30 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
