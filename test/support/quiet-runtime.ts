import { DefaultLogger, Runtime } from '@temporalio/worker';

/**
 * In-process workers log at ERROR (TEST_TEMPORAL_LOG=WARN|INFO|… to see more): left at the SDK's
 * default INFO, every committed ledger step is a dozen lines of Jest output. Once per test file;
 * a Runtime already installed in this module registry is kept.
 */
export function quietRuntime(): void {
  try {
    Runtime.install({ logger: new DefaultLogger((process.env.TEST_TEMPORAL_LOG as 'WARN') ?? 'ERROR') });
  } catch {
    /* already installed */
  }
}
