import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import type { Config } from '../lib/config';
import type { Logger } from '../lib/logger';

const LEVELS: Record<Config['LOG_LEVEL'], LogLevel> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
  fatal: 'ERROR',
  silent: 'ERROR',
};

/** The SDK's log lines, into ours; activity lines arrive with workflowId, activityType, attempt… */
function sdkLogger(log: Logger, level: Config['LOG_LEVEL']): DefaultLogger {
  return new DefaultLogger(LEVELS[level], (entry) => {
    // The task token is a long opaque blob: no use to a reader.
    const { taskToken: _token, ...meta } = (entry.meta ?? {}) as Record<string, unknown>;
    let fn = entry.level.toLowerCase() as Lowercase<LogLevel>;
    // The worker's own start-up chatter (the whole webpack report of the bundle…) is debug to us.
    if (fn === 'info' && meta.sdkComponent === 'worker') fn = 'debug';
    log[fn === 'trace' || fn === 'debug' || fn === 'info' || fn === 'warn' ? fn : 'error'](meta, entry.message);
  });
}

/**
 * The SDK runtime: its logs into pino, and its own metrics (task and activity latencies, slots,
 * polls: `temporal_*`) served for Prometheus at `metricsAddress` (WORKER_METRICS_ADDRESS), unless
 * `off`. A taken port does not stop the worker: it runs without those metrics, and says so.
 */
export function installRuntime(log: Logger, level: Config['LOG_LEVEL'], metricsAddress: string): void {
  const logger = sdkLogger(log, level);
  if (metricsAddress !== 'off') {
    try {
      Runtime.install({ logger, telemetryOptions: { metrics: { prometheus: { bindAddress: metricsAddress } } } });
      log.info({ metrics: `http://${metricsAddress}/metrics` }, 'worker metrics served');
      return;
    } catch (err) {
      log.warn({ err: String(err), metricsAddress }, 'worker metrics not served (address unavailable)');
    }
  }
  Runtime.install({ logger });
}
