import type { DevServer } from '../../lib/temporal-dev-server';

export default async function globalTeardown(): Promise<void> {
  await (globalThis as { __temporal?: DevServer }).__temporal?.stop();
  // The Postgres test cluster stays up between runs (fast re-runs); scripts/test.sh stops it in CI.
}
