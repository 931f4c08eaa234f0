/**
 * Test-only fault injection at a step's boundaries: with CREDITFLOW_TEST_CRASH=<activity>:before
 * the worker process dies before that activity's ledger transaction starts; with `:after`, right
 * after it committed, before Temporal hears of it. (CREDITFLOW_TEST_CRASH_AFTER_COMMIT=<activity>
 * is the older spelling of `:after`.)
 */
export function crashPoint(activity: string, when: 'before' | 'after'): void {
  const legacy = process.env.CREDITFLOW_TEST_CRASH_AFTER_COMMIT;
  const spec = process.env.CREDITFLOW_TEST_CRASH || (legacy ? `${legacy}:after` : '');
  if (spec === `${activity}:${when}`) process.kill(process.pid, 'SIGKILL');
}
