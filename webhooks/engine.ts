import type { Pool } from '../db/pool';
import {
  claimDue,
  fanOut,
  getEndpointForDelivery,
  recordAttempt,
  type DueDelivery,
  type EndpointForDelivery,
} from '../db/webhooks';
import { postWebhook, type AttemptResult } from './deliver';
import { onOutboxInsert } from './listener';
import { notificationBody, notificationId, signedHeaders } from './notification';
import { parseWebhookUrl, UrlRefused, type UrlPolicy } from './url-policy';

/** At most this many requests in flight per endpoint: a slow receiver is never flooded. */
export const ENDPOINT_CONCURRENCY = 4;
/** A claimed delivery is due again after this long if its attempt never settles (worker died). */
export const LEASE_MS = 30_000;
/** Failed attempts are retried for at least this long, then the delivery is `failed`. */
export const RETRY_FOR_MS = 24 * 3_600_000;
/** The loop looks for work at least this often (NOTIFY wakes it sooner). */
export const POLL_MS = 1000;

const HOUR_MS = 3_600_000;
/** A failing endpoint is probed at most this rarely (its deliveries keep their own backoff too). */
export const MAX_ENDPOINT_PAUSE_MS = 5 * 60_000;

/** Exponential backoff with ±20 % jitter: 1 s, 2 s, 4 s, … capped at 1 h. `attempt` counts from 1. */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(HOUR_MS, 1000 * 2 ** Math.min(Math.max(attempt - 1, 0), 22));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/** Secrets that sign now: the current one, and the previous one during a rotation's overlap. */
export function signingSecrets(ep: EndpointForDelivery, now = new Date()): string[] {
  const overlap = ep.previousSecret && ep.previousSecretUntil && ep.previousSecretUntil > now;
  return overlap ? [ep.secret, ep.previousSecret!] : [ep.secret];
}

/** One attempt of one delivery: sign, POST, then log it and settle the delivery. */
export async function attemptDelivery(
  pool: Pool,
  ep: EndpointForDelivery,
  d: DueDelivery,
  o: { policy: UrlPolicy; signal?: AbortSignal; timeoutMs?: number },
): Promise<AttemptResult & { status: string | null }> {
  const msgId = notificationId(d.event.id);
  const body = JSON.stringify(notificationBody(d.event));
  let r: AttemptResult;
  try {
    const headers = signedHeaders(msgId, body, signingSecrets(ep));
    r = await postWebhook(parseWebhookUrl(ep.url), body, headers, o);
  } catch (err) {
    if (!(err instanceof UrlRefused)) throw err;
    r = { statusCode: null, error: `URL refused: ${err.message}`, latencyMs: 0, bytesRead: 0 };
  }
  const delivered = r.statusCode !== null && r.statusCode >= 200 && r.statusCode < 300;
  const attempt = d.attempts + 1;
  const status = await recordAttempt(pool, {
    endpointId: ep.id,
    eventId: d.event.id,
    attempt,
    statusCode: r.statusCode,
    error: delivered ? null : r.error,
    latencyMs: r.latencyMs,
    delivered,
    retryInMs: backoffMs(attempt),
    giveUpAfterMs: RETRY_FOR_MS,
  });
  return { ...r, status };
}

/** A level-triggered wake-up: fire() before wait() makes the next wait() return at once. */
class Wakeup {
  private fired = false;
  private wake: (() => void) | null = null;

  fire(): void {
    this.fired = true;
    this.wake?.();
  }

  async wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (!this.fired && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          this.wake = null;
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal?.addEventListener('abort', done);
        this.wake = done;
      });
    }
    this.fired = false;
  }
}

export interface LoopOptions {
  runForMs: number;
  policy: UrlPolicy;
  concurrency?: number;
  pollMs?: number;
  heartbeat?: () => void;
  /** Abort (worker shutdown, activity cancelled): stop claiming, abort requests in flight. */
  signal?: AbortSignal;
}

export type LoopOutcome = { stopped: 'deleted' | 'elapsed' | 'cancelled'; attempts: number; delivered: number };

/**
 * One endpoint's delivery loop, for `runForMs`: fan new outbox rows out into deliveries, attempt
 * the due ones (at most `concurrency` at a time), wait for a NOTIFY, a finished attempt or the
 * poll interval, repeat. Ends early when the endpoint is deleted. Everything it knows is in the
 * database, so a loop that dies is replaced by another (the next activity attempt) losing nothing.
 */
export async function runEndpointLoop(pool: Pool, endpointId: string, o: LoopOptions): Promise<LoopOutcome> {
  const until = Date.now() + o.runForMs;
  const concurrency = o.concurrency ?? ENDPOINT_CONCURRENCY;
  // Circuit breaker, in memory: after a failed attempt the endpoint rests (backing off with the
  // failure streak), then gets one probe at a time until an attempt succeeds. A dead receiver
  // with thousands of due deliveries sees one request per pause, not a wave per backoff step.
  let streak = 0;
  let pausedUntil = 0;
  const wake = new Wakeup();
  const unsubscribe = onOutboxInsert(pool, () => wake.fire());
  const inflight = new Set<Promise<void>>();
  const outcome: LoopOutcome = { stopped: 'elapsed', attempts: 0, delivered: 0 };
  const broken: { err: Error | null } = { err: null };
  try {
    while (Date.now() < until) {
      if (o.signal?.aborted) return { ...outcome, stopped: 'cancelled' };
      if (broken.err) throw broken.err;
      o.heartbeat?.();
      const ep = await getEndpointForDelivery(pool, endpointId);
      if (!ep || ep.deletedAt) return { ...outcome, stopped: 'deleted' };
      await fanOut(pool, endpointId);
      const free = Date.now() < pausedUntil ? 0 : (streak > 0 ? 1 : concurrency) - inflight.size;
      if (free > 0) {
        for (const d of await claimDue(pool, endpointId, free, LEASE_MS)) {
          const p: Promise<void> = attemptDelivery(pool, ep, d, o)
            .then((r) => {
              outcome.attempts++;
              if (r.status === 'delivered') outcome.delivered++;
              const ok = r.statusCode !== null && r.statusCode >= 200 && r.statusCode < 300;
              streak = ok ? 0 : streak + 1;
              if (!ok) pausedUntil = Date.now() + Math.min(backoffMs(streak), MAX_ENDPOINT_PAUSE_MS);
            })
            .catch((err: unknown) => {
              // The database failed: end this run, the activity is retried.
              broken.err ??= err instanceof Error ? err : new Error(String(err));
            })
            .finally(() => {
              inflight.delete(p);
              wake.fire();
            });
          inflight.add(p);
        }
      }
      const pauseLeft = pausedUntil - Date.now();
      const waitMs = Math.min(o.pollMs ?? POLL_MS, until - Date.now(), pauseLeft > 0 ? pauseLeft : Infinity);
      await wake.wait(Math.max(0, waitMs), o.signal);
    }
    return outcome;
  } finally {
    unsubscribe();
    await Promise.allSettled([...inflight]);
  }
}
