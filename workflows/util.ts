import { ActivityFailure, ApplicationFailure } from '@temporalio/workflow';

/** Deterministic helpers for workflow code (no I/O). */

/** Runs workflow operations one at a time, in arrival order, so ledger steps never interleave. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

const CREDITS = /^(0|[1-9][0-9]*)(\.[0-9]{1,6})?$/;

/** Update validators reject bad amounts before they enter history. */
export function parsePositiveCredits(value: unknown, name: string, opts: { allowZero?: boolean } = {}): void {
  if (typeof value !== 'string' || !CREDITS.test(value))
    throw new Error(`${name} must be a decimal string with ≤ 6 decimals`);
  if (!opts.allowZero && /^0(\.0+)?$/.test(value)) throw new Error(`${name} must be greater than 0`);
  if (value.split('.')[0]!.length > 13) throw new Error(`${name} is too large`);
}

/** The ApplicationFailure behind an activity's failure: its type, message and the gateway's `code`. */
export function applicationFailure(err: unknown): { code?: string; type?: string; message: string } | null {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (!(cause instanceof ApplicationFailure)) return null;
  const d = (cause.details?.[0] ?? {}) as { code?: string };
  return { code: d.code, type: cause.type ?? undefined, message: cause.message };
}
