import { startTemporalDevServer } from '../lib/temporal-dev-server';

/**
 * Runs the Temporal dev server (with Web UI, state in a SQLite file) until SIGINT/SIGTERM.
 * Env: TEMPORAL_BIN (empty → SDK download), TEMPORAL_PORT, TEMPORAL_UI_PORT, TEMPORAL_DB_FILE, TEMPORAL_LOG_FILE.
 */
async function main(): Promise<void> {
  const server = await startTemporalDevServer({
    bin: process.env.TEMPORAL_BIN || undefined,
    ip: process.env.TEMPORAL_IP ?? '127.0.0.1',
    port: Number(process.env.TEMPORAL_PORT ?? 7233),
    uiPort: Number(process.env.TEMPORAL_UI_PORT ?? 8233),
    dbFile: process.env.TEMPORAL_DB_FILE,
    logFile: process.env.TEMPORAL_LOG_FILE,
  });
  console.log(
    JSON.stringify({ level: 'info', msg: 'Temporal dev server ready', address: server.address, ui: server.uiUrl }),
  );
  const stop = () => {
    void server.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(JSON.stringify({ level: 'fatal', msg: 'Temporal dev server failed', err: String(err) }));
  process.exit(1);
});
