import { ApplicationFailure, Context } from '@temporalio/activity';
import { purgeHttpIdempotency } from '../db/housekeeping';
import { crashPoint } from './crash';
import type { ActivityDeps } from './index';

/** Housekeeping deletes only stored HTTP replies past their retention; never ledger rows. */
export function housekeepingActivities(deps: ActivityDeps) {
  return {
    /**
     * Up to `batches` bounded DELETEs of `batchSize` rows created before `cutoff`, heartbeating
     * between them (a lost worker is noticed in a minute). Stops at the first short batch: `done`.
     * A retry after a crash finds the rows already gone: deleting is its own idempotency.
     */
    async purgeIdempotencyRecords(o: { cutoff: string; batchSize: number; batches: number }) {
      const cutoff = new Date(o.cutoff);
      if (Number.isNaN(cutoff.getTime()) || !(o.batchSize >= 1) || !(o.batches >= 1))
        throw ApplicationFailure.create({ type: 'InvalidRequest', message: 'bad purge input', nonRetryable: true });
      let purged = 0;
      let done = false;
      for (let i = 0; i < o.batches && !done; i++) {
        Context.current().heartbeat({ purged });
        const n = await purgeHttpIdempotency(deps.pool, cutoff, o.batchSize);
        purged += n;
        done = n < o.batchSize;
      }
      crashPoint('purgeIdempotencyRecords', 'after');
      return { purged, done };
    },
  };
}
