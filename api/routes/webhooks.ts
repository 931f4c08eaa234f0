import { randomBytes } from 'node:crypto';
import { Router } from 'express';
import { withTransaction, type Pool } from '../../db/pool';
import { insertAuditEvent } from '../../db/audit-events';
import {
  deleteEndpoint,
  getEndpoint,
  insertEndpoint,
  listAttempts,
  listEndpoints,
  rotateSecret,
  type EndpointView,
} from '../../db/webhooks';
import type { Logger } from '../../lib/logger';
import { NOTIFICATION_TYPES, newSecret, notificationId } from '../../webhooks/notification';
import { checkUrl, parseWebhookUrl, policyFromEnv, UrlRefused, type UrlPolicy } from '../../webhooks/url-policy';
import { allow } from '../auth';
import { problem } from '../problem';
import { body, decodeCursor, encodeCursor, params, query } from '../validate';
import { z } from '../zod';

/** How long the old secret keeps signing after a rotation. */
export const ROTATION_OVERLAP_SECONDS = 24 * 3600;

const EndpointId = z.string().regex(/^we_[0-9a-f]{16}$/, 'a webhook endpoint id (we_ and 16 hex digits)');
export const EndpointParams = z.strictObject({ id: EndpointId });
export const PageQuery = z.strictObject({
  cursor: z.string().max(200).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
export const CreateEndpointBody = z.strictObject({
  url: z.string().min(1),
  types: z
    .array(z.enum(NOTIFICATION_TYPES))
    .min(1)
    .max(100)
    .optional()
    .openapi({ description: 'default (or empty in responses): every type, including types added later' }),
  description: z.string().min(1).max(500).optional(),
});

const endpointView = (e: EndpointView) => ({
  id: e.id,
  url: e.url,
  types: e.types,
  description: e.description,
  createdAt: e.createdAt.toISOString(),
  deletedAt: e.deletedAt?.toISOString() ?? null,
});

const urlProblem = (message: string) => problem(400, 'invalid body', { errors: [{ path: 'body.url', message }] });

const ENDPOINT = 'we';
const ATTEMPT = 'wa';
const isEndpointId = (v: string) => EndpointId.safeParse(v).success;
const isAttemptId = (v: string) => /^[0-9]{1,18}$/.test(v);

/**
 * Webhook endpoints (admin only). The secret is returned by the creation and rotation responses
 * only, and never logged. `start` starts the endpoint's delivery workflow (best effort: the keeper
 * schedule starts any that is missing).
 */
export function webhookRoutes(deps: {
  pool: Pool;
  start?: (endpointId: string) => Promise<void>;
  logger?: Logger;
  /** Default: the process's environment (CREDITFLOW_MODE, WEBHOOK_ALLOWED_HOSTS). */
  policy?: () => UrlPolicy;
}): Router {
  const r = Router();
  const { pool } = deps;
  const policy = deps.policy ?? (() => policyFromEnv());

  r.post('/webhook-endpoints', allow([]), async (req, res) => {
    const b = body(CreateEndpointBody, req);
    let url: URL;
    try {
      url = parseWebhookUrl(b.url);
      await checkUrl(policy(), url);
    } catch (err) {
      if (err instanceof UrlRefused) throw urlProblem(err.message);
      throw err;
    }
    const secret = newSecret();
    const e = await withTransaction(pool, async (tx) => {
      const created = await insertEndpoint(tx, {
        id: `we_${randomBytes(8).toString('hex')}`,
        url: url.href,
        types: [...new Set(b.types ?? [])],
        description: b.description ?? null,
        secret,
      });
      // Never the secret: who subscribed what.
      await insertAuditEvent(tx, {
        action: 'webhook_endpoint.created',
        subject: `webhook_endpoint:${created.id}`,
        detail: { url: created.url, types: created.types },
      });
      return created;
    });
    await deps.start?.(e.id).catch((err: unknown) => {
      deps.logger?.warn({ endpointId: e.id, err: String(err) }, 'webhook delivery not started; the keeper will');
    });
    res.status(201).json({ ...endpointView(e), secret });
  });

  r.get('/webhook-endpoints', allow([]), async (req, res) => {
    const q = query(PageQuery, req);
    const after = q.cursor ? decodeCursor(ENDPOINT, q.cursor, isEndpointId) : undefined;
    const rows = await listEndpoints(pool, { after, limit: q.limit + 1 });
    const page = rows.slice(0, q.limit);
    res.json({
      endpoints: page.map(endpointView),
      nextCursor: rows.length > q.limit ? encodeCursor(ENDPOINT, page[page.length - 1]!.id) : null,
    });
  });

  r.get('/webhook-endpoints/:id', allow([]), async (req, res) => {
    const { id } = params(EndpointParams, req);
    const e = await getEndpoint(pool, id);
    if (!e) throw problem(404, `webhook endpoint ${id} does not exist`);
    res.json(endpointView(e));
  });

  r.delete('/webhook-endpoints/:id', allow([]), async (req, res) => {
    const { id } = params(EndpointParams, req);
    const e = await withTransaction(pool, async (tx) => {
      const was = await getEndpoint(tx, id);
      const deleted = await deleteEndpoint(tx, id);
      if (deleted && was && !was.deletedAt)
        await insertAuditEvent(tx, {
          action: 'webhook_endpoint.deleted',
          subject: `webhook_endpoint:${id}`,
          detail: { url: deleted.url },
        });
      return deleted;
    });
    if (!e) throw problem(404, `webhook endpoint ${id} does not exist`);
    res.json(endpointView(e));
  });

  r.post('/webhook-endpoints/:id/rotate-secret', allow([]), async (req, res) => {
    const { id } = params(EndpointParams, req);
    body(z.strictObject({}), req);
    const secret = newSecret();
    const rotated = await withTransaction(pool, async (tx) => {
      const r = await rotateSecret(tx, id, secret, ROTATION_OVERLAP_SECONDS);
      if (r)
        await insertAuditEvent(tx, {
          action: 'webhook_endpoint.secret_rotated',
          subject: `webhook_endpoint:${id}`,
          detail: { previousSecretExpiresAt: r.previousSecretUntil.toISOString() },
        });
      return r;
    });
    if (!rotated) throw problem(404, `webhook endpoint ${id} does not exist`);
    res.json({ id, secret, previousSecretExpiresAt: rotated.previousSecretUntil.toISOString() });
  });

  r.get('/webhook-endpoints/:id/deliveries', allow([]), async (req, res) => {
    const { id } = params(EndpointParams, req);
    const q = query(PageQuery, req);
    const beforeId = q.cursor ? BigInt(decodeCursor(ATTEMPT, q.cursor, isAttemptId)) : undefined;
    if (!(await getEndpoint(pool, id))) throw problem(404, `webhook endpoint ${id} does not exist`);
    const rows = await listAttempts(pool, { endpointId: id, beforeId, limit: q.limit + 1 });
    const page = rows.slice(0, q.limit);
    res.json({
      attempts: page.map((a) => ({
        eventId: notificationId(a.eventId),
        attempt: a.attempt,
        statusCode: a.statusCode,
        error: a.error,
        latencyMs: a.latencyMs,
        at: a.at.toISOString(),
        delivery: { status: a.deliveryStatus, nextAttemptAt: a.nextAttemptAt?.toISOString() ?? null },
      })),
      nextCursor: rows.length > q.limit ? encodeCursor(ATTEMPT, page[page.length - 1]!.id) : null,
    });
  });

  return r;
}
