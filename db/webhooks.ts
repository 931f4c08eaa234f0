import type { OutboxRow } from '../webhooks/notification';
import type { Queryable } from './queryable';

export interface EndpointView {
  id: string;
  url: string;
  /** Empty: every type. */
  types: string[];
  description: string | null;
  createdAt: Date;
  deletedAt: Date | null;
}

/** What a delivery needs: the view plus the signing secrets (never leaves the worker). */
export interface EndpointForDelivery extends EndpointView {
  secret: string;
  previousSecret: string | null;
  previousSecretUntil: Date | null;
}

type Row = {
  id: string;
  url: string;
  types: string[];
  description: string | null;
  created_at: Date;
  deleted_at: Date | null;
  secret: string;
  previous_secret: string | null;
  previous_secret_until: Date | null;
};
const VIEW = 'id, url, types, description, created_at, deleted_at';
const view = (r: Row): EndpointView => ({
  id: r.id,
  url: r.url,
  types: r.types,
  description: r.description,
  createdAt: r.created_at,
  deletedAt: r.deleted_at,
});

/**
 * The outbox horizon: every transaction below it has finished, so outbox rows below it are final
 * (migration 010). A new endpoint starts there: it receives what commits from now on.
 */
const HORIZON = `pg_snapshot_xmin(pg_current_snapshot())::text::bigint`;

export async function insertEndpoint(
  q: Queryable,
  e: { id: string; url: string; types: readonly string[]; description: string | null; secret: string },
): Promise<EndpointView> {
  const r = await q.query<Row>(
    `INSERT INTO webhook_endpoints (id, url, types, description, secret, cursor)
     VALUES ($1, $2, $3, $4, $5, ${HORIZON}) RETURNING ${VIEW}`,
    [e.id, e.url, e.types, e.description, e.secret],
  );
  return view(r.rows[0]!);
}

/** Live endpoints oldest first; `after` is the last id of the previous page. */
export async function listEndpoints(q: Queryable, o: { after?: string; limit: number }): Promise<EndpointView[]> {
  const r = await q.query<Row>(
    `SELECT ${VIEW} FROM webhook_endpoints
      WHERE deleted_at IS NULL
        AND ($1::text IS NULL OR (created_at, id) > (SELECT created_at, id FROM webhook_endpoints WHERE id = $1))
      ORDER BY created_at, id LIMIT $2`,
    [o.after ?? null, o.limit],
  );
  return r.rows.map(view);
}

export async function liveEndpointIds(q: Queryable, limit: number): Promise<string[]> {
  const r = await q.query<{ id: string }>(
    `SELECT id FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY created_at, id LIMIT $1`,
    [limit],
  );
  return r.rows.map((x) => x.id);
}

export async function getEndpoint(q: Queryable, id: string): Promise<EndpointView | null> {
  const r = await q.query<Row>(`SELECT ${VIEW} FROM webhook_endpoints WHERE id = $1`, [id]);
  return r.rows[0] ? view(r.rows[0]) : null;
}

export async function getEndpointForDelivery(q: Queryable, id: string): Promise<EndpointForDelivery | null> {
  const r = await q.query<Row>(
    `SELECT ${VIEW}, secret, previous_secret, previous_secret_until FROM webhook_endpoints WHERE id = $1`,
    [id],
  );
  const row = r.rows[0];
  if (!row) return null;
  return {
    ...view(row),
    secret: row.secret,
    previousSecret: row.previous_secret,
    previousSecretUntil: row.previous_secret_until,
  };
}

/** Soft delete (the first time is kept); null when there is no such endpoint. */
export async function deleteEndpoint(q: Queryable, id: string): Promise<EndpointView | null> {
  const r = await q.query<Row>(
    `UPDATE webhook_endpoints SET deleted_at = coalesce(deleted_at, now()) WHERE id = $1 RETURNING ${VIEW}`,
    [id],
  );
  return r.rows[0] ? view(r.rows[0]) : null;
}

/** The old secret keeps signing for `overlapSeconds`; null when there is no live endpoint `id`. */
export async function rotateSecret(
  q: Queryable,
  id: string,
  secret: string,
  overlapSeconds: number,
): Promise<{ previousSecretUntil: Date } | null> {
  const r = await q.query<{ previous_secret_until: Date }>(
    `UPDATE webhook_endpoints
        SET previous_secret = secret, secret = $2, previous_secret_until = now() + make_interval(secs => $3)
      WHERE id = $1 AND deleted_at IS NULL RETURNING previous_secret_until`,
    [id, secret, overlapSeconds],
  );
  return r.rows[0] ? { previousSecretUntil: r.rows[0].previous_secret_until } : null;
}

/**
 * Fan-out, one statement (one snapshot): outbox rows of the endpoint's types between its cursor
 * and the horizon become pending deliveries, and the cursor moves to the horizon. Idempotent:
 * a delivery row exists once per (endpoint, event). Returns how many rows it added.
 */
export async function fanOut(q: Queryable, endpointId: string): Promise<number> {
  const r = await q.query<{ added: string }>(
    `WITH h AS (SELECT ${HORIZON} AS x),
          ep AS (SELECT id, types, cursor FROM webhook_endpoints, h
                  WHERE id = $1 AND deleted_at IS NULL AND cursor < h.x),
          ins AS (
            INSERT INTO webhook_deliveries (endpoint_id, event_id, status)
            SELECT ep.id, o.id, 'pending' FROM ep, h, notification_events o
             WHERE o.xid >= ep.cursor::text::xid8 AND o.xid < h.x::text::xid8
               AND (cardinality(ep.types) = 0 OR o.type = ANY (ep.types))
            ON CONFLICT DO NOTHING RETURNING 1),
          moved AS (
            UPDATE webhook_endpoints w SET cursor = h.x FROM h, ep WHERE w.id = ep.id AND w.cursor < h.x)
     SELECT count(*)::text AS added FROM ins`,
    [endpointId],
  );
  return Number(r.rows[0]!.added);
}

export interface DueDelivery {
  event: OutboxRow;
  /** Attempts made before this one. */
  attempts: number;
}

/**
 * Claims up to `limit` due deliveries for one attempt each: their next_attempt_at moves `leaseMs`
 * ahead, so another loop (a second activity after a heartbeat timeout) does not send them too,
 * and a worker that dies mid-attempt leaves them due again after the lease.
 */
export async function claimDue(q: Queryable, endpointId: string, limit: number, leaseMs: number) {
  const r = await q.query<{
    event_id: string;
    attempts: number;
    type: string;
    customer_id: string | null;
    event_created_at: Date;
    payload: unknown;
  }>(
    `UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $3::float8 / 1000)
       FROM (SELECT endpoint_id, event_id FROM webhook_deliveries
              WHERE endpoint_id = $1 AND status = 'pending' AND next_attempt_at <= clock_timestamp()
              ORDER BY next_attempt_at, event_id LIMIT $2 FOR UPDATE SKIP LOCKED) c,
            notification_events o
      WHERE d.endpoint_id = c.endpoint_id AND d.event_id = c.event_id AND o.id = d.event_id
      RETURNING d.event_id::text, d.attempts, o.type, o.customer_id, o.created_at AS event_created_at, o.payload`,
    [endpointId, limit, leaseMs],
  );
  return r.rows.map((x): DueDelivery => ({
    attempts: x.attempts,
    event: {
      id: x.event_id,
      type: x.type,
      customerId: x.customer_id,
      createdAt: x.event_created_at,
      payload: x.payload,
    },
  }));
}

/**
 * Logs one attempt and settles its delivery in one statement: delivered on a 2xx; otherwise the
 * next attempt after `retryInMs`, or `failed` once the delivery is older than `giveUpAfterMs`.
 */
export async function recordAttempt(
  q: Queryable,
  a: {
    endpointId: string;
    eventId: string;
    attempt: number;
    statusCode: number | null;
    error: string | null;
    latencyMs: number;
    delivered: boolean;
    retryInMs: number;
    giveUpAfterMs: number;
  },
): Promise<'delivered' | 'pending' | 'failed' | null> {
  const r = await q.query<{ status: 'delivered' | 'pending' | 'failed' }>(
    `WITH logged AS (
       INSERT INTO webhook_attempts (endpoint_id, event_id, attempt, status_code, error, latency_ms)
       VALUES ($1, $2, $3, $4, $5, $6))
     UPDATE webhook_deliveries
        SET attempts = attempts + 1, last_status_code = $4, last_error = $5,
            status = CASE WHEN $7::boolean THEN 'delivered'
                          WHEN now() - created_at >= make_interval(secs => $9::float8 / 1000) THEN 'failed'
                          ELSE 'pending' END,
            delivered_at = CASE WHEN $7::boolean THEN now() END,
            next_attempt_at = now() + make_interval(secs => $8::float8 / 1000)
      WHERE endpoint_id = $1 AND event_id = $2 AND status = 'pending'
      RETURNING status`,
    [a.endpointId, a.eventId, a.attempt, a.statusCode, a.error, a.latencyMs, a.delivered, a.retryInMs, a.giveUpAfterMs],
  );
  return r.rows[0]?.status ?? null;
}

export interface AttemptView {
  id: string;
  eventId: string;
  attempt: number;
  statusCode: number | null;
  error: string | null;
  latencyMs: number;
  at: Date;
  deliveryStatus: 'pending' | 'delivered' | 'failed';
  nextAttemptAt: Date | null;
}

/** An endpoint's attempts, newest first, each with its delivery's status; `beforeId` pages. */
export async function listAttempts(
  q: Queryable,
  o: { endpointId: string; beforeId?: bigint; limit: number },
): Promise<AttemptView[]> {
  const r = await q.query<{
    id: string;
    event_id: string;
    attempt: number;
    status_code: number | null;
    error: string | null;
    latency_ms: number;
    at: Date;
    status: 'pending' | 'delivered' | 'failed';
    next_attempt_at: Date;
  }>(
    `SELECT a.id::text, a.event_id::text, a.attempt, a.status_code, a.error, a.latency_ms, a.at,
            d.status, d.next_attempt_at
       FROM webhook_attempts a
       JOIN webhook_deliveries d ON d.endpoint_id = a.endpoint_id AND d.event_id = a.event_id
      WHERE a.endpoint_id = $1 AND ($2::bigint IS NULL OR a.id < $2)
      ORDER BY a.id DESC LIMIT $3`,
    [o.endpointId, o.beforeId?.toString() ?? null, o.limit],
  );
  return r.rows.map((x) => ({
    id: x.id,
    eventId: x.event_id,
    attempt: x.attempt,
    statusCode: x.status_code,
    error: x.error,
    latencyMs: x.latency_ms,
    at: x.at,
    deliveryStatus: x.status,
    nextAttemptAt: x.status === 'pending' ? x.next_attempt_at : null,
  }));
}
