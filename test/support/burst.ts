import type { Pool } from '../../db/pool';

/**
 * Sends a burst with every connection of `pool` taken first, so the burst's requests really queue
 * for the pool (on a loaded machine they might otherwise trickle in one at a time). The held
 * connections are given back once requests wait. Returns the answers and how many waited at most.
 */
export async function burstOnFullPool<T>(
  pool: Pool,
  size: number,
  send: () => Promise<T>[],
): Promise<{ answers: T[]; queued: number }> {
  let queued = 0;
  const peek = () => (queued = Math.max(queued, pool.waitingCount));
  pool.on('acquire', peek);
  const held = await Promise.all(Array.from({ length: size }, () => pool.connect()));
  const answers = Promise.all(send());
  const until = Date.now() + 10_000;
  while (pool.waitingCount === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  for (const c of held) c.release();
  try {
    return { answers: await answers, queued };
  } finally {
    pool.off('acquire', peek);
  }
}
