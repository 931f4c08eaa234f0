import express, { type Request, type Router } from 'express';
import type { Pool } from '../db/pool';
import type { Ledger } from '../ledger/ledger';
import type { Logger } from '../lib/logger';
import { authenticate } from './auth';
import { jsonBody } from './body';
import { withAudit } from '../lib/audit';
import { createMetrics } from './metrics';
import { requestId } from './request-id';
import { buildOpenApi, renderDocs } from './openapi';
import { errorHandler, HttpProblem } from './problem';
import { customerRoutes } from './routes/customers';
import { grantRoutes } from './routes/grants';
import { meteringRoutes } from './routes/metering';
import { rateCardRoutes } from './routes/rate-cards';
import { holdRoutes } from './routes/holds';
import { apiKeyRoutes } from './routes/api-keys';
import { auditRoutes } from './routes/audit';
import { strictQuery } from './validate';
import type { HoldsClient } from '../client/holds';
import { RateCardResolver } from '../metering/rate-cards';
import type { PaymentsClient } from '../client/payments';
import type { TopUpTrigger } from '../client/topups';
import type { PaymentGateway } from '../payments/gateway';
import { SandboxGateway } from '../payments/sandbox';
import { paymentRoutes } from './routes/payments';
import { topUpRoutes } from './routes/topups';
import { refundRoutes } from './routes/refunds';
import { correctionRoutes } from './routes/corrections';
import { alertRoutes } from './routes/alerts';
import { webhookRoutes } from './routes/webhooks';
import { reconciliationRoutes, type StartReconciliation } from './routes/reconciliation';
import { BalanceStreams } from './balance-streams';
import { PortalTokens } from './portal-tokens';
import { portalApiRoutes, portalPageRoutes } from './routes/portal';

export interface AppDeps {
  pool: Pool;
  ledger: Ledger;
  logger: Logger;
  /** Resolves when Temporal answers; rejects otherwise. */
  temporalReady: () => Promise<void>;
  /** Resolves when a worker polls the task queue; rejects otherwise. Part of /readyz when given. */
  workerReady?: () => Promise<void>;
  /** The reservation client (over the process's one Temporal connection). */
  holds?: () => Promise<HoldsClient>;
  /** Starts or signals a customer's credit-lifecycle workflow. */
  lifecycle?: (customerId: string) => Promise<void>;
  /** The payment gateway (default: the sandbox, for tests). */
  gateway?: PaymentGateway;
  /** Starts purchase workflows. */
  payments?: () => Promise<PaymentsClient>;
  /** After a debit commits: signals wallets left below their auto top-up threshold. */
  topUps?: TopUpTrigger;
  /** Starts a webhook endpoint's delivery workflow. */
  webhooks?: (endpointId: string) => Promise<void>;
  /** Starts a reconciliation run now. */
  reconciliation?: StartReconciliation;
  /** Open live-balance streams (default: one per app, 10,000 at most, heartbeats every 15 s). */
  balanceStreams?: BalanceStreams;
  /** Signs and verifies portal tokens (default: a random secret, valid only in this process). */
  portalTokens?: PortalTokens;
  /** The public origin of the portal page in portal-token URLs (default: the request's). */
  publicUrl?: string;
  bodyLimit?: string;
  /** How long /metrics reuses its database figures (METRICS_CACHE_MS). */
  metricsCacheMs?: number;
  clock?: () => Date;
}

const noTemporal = () => Promise.reject(Object.assign(new Error('Temporal is not configured'), { code: 14 }));

const withTimeout = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref())]);

/** The router internals we read to answer 405 with Allow (express 5 / router 2). */
interface Layer {
  route?: { methods: Record<string, boolean> };
  handle: { stack?: Layer[] };
  match(path: string): { path: string } | false;
}

const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** The methods some route of this router stack answers at `path` (empty: no such path). */
function methodsAt(stack: Layer[], path: string, into = new Set<string>()): Set<string> {
  for (const layer of stack) {
    // Throws the router's own URIError (status 400) for a parameter that is not valid percent-encoding.
    const m = layer.match(path);
    if (!m) continue;
    if (layer.route) {
      for (const [method, on] of Object.entries(layer.route.methods)) if (on) into.add(method.toUpperCase());
    } else if (layer.handle.stack) {
      methodsAt(layer.handle.stack, path.slice(m.path.length) || '/', into);
    }
  }
  if (into.has('GET')) into.add('HEAD');
  return into;
}

/** 404 for a path no route has, 405 (with Allow) for a method the path's routes lack; null when routable. */
function routeProblem(router: Router, req: Request): HttpProblem | null {
  const methods = methodsAt((router as unknown as { stack: Layer[] }).stack, req.path);
  const where = `${req.baseUrl}${req.path}`;
  if (methods.size === 0) return new HttpProblem(404, 'Not Found', `no route ${req.method} ${where}`);
  // OPTIONS is answered by the router itself, from the same routes.
  if (methods.has(req.method) || req.method === 'OPTIONS') return null;
  const allow = [...methods].sort((a, b) => METHOD_ORDER.indexOf(a) - METHOD_ORDER.indexOf(b)).join(', ');
  return new HttpProblem(405, 'Method Not Allowed', `${where} does not allow ${req.method}`, {}, { Allow: allow });
}

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  const clock = deps.clock ?? (() => new Date());
  const metrics = createMetrics({ pool: deps.pool, log: deps.logger, cacheMs: deps.metricsCacheMs });
  const openapi = buildOpenApi();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(requestId(deps.logger));
  app.use(metrics.middleware);

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const probes: Record<string, () => Promise<unknown>> = {
      postgres: () => deps.pool.query('SELECT 1'),
      temporal: deps.temporalReady,
      ...(deps.workerReady ? { worker: deps.workerReady } : {}),
    };
    const results = await Promise.allSettled(
      Object.values(probes).map((probe) => withTimeout(Promise.resolve().then(probe), 2000)),
    );
    const checks = Object.fromEntries(
      Object.keys(probes).map((name, i) => [name, results[i]!.status === 'fulfilled' ? 'up' : 'down']),
    );
    const ready = Object.values(checks).every((c) => c === 'up');
    if (!ready) res.setHeader('Retry-After', '5');
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
  });
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.get('/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  // A self-contained reference page (no CDN: deployments may be offline).
  const docs = renderDocs(openapi);
  app.get('/docs', (_req, res) => {
    res.type('html').send(docs);
  });

  app.use(portalPageRoutes());

  const tokens = deps.portalTokens ?? new PortalTokens();
  const streams =
    deps.balanceStreams ?? new BalanceStreams(deps.pool, { maxStreams: 10_000, heartbeatMs: 15_000, clock });
  const v1 = express.Router();
  v1.use(authenticate(deps.pool, { tokens, clock }));
  v1.use(strictQuery);
  // Before the body is read: a wrong method or path is refused whatever it carries.
  v1.use((req, _res, next) => {
    const p = routeProblem(v1, req);
    if (p) throw p;
    next();
  });
  v1.use(jsonBody({ limit: deps.bodyLimit ?? '1mb' }));
  // After the body is read (stream callbacks would lose the context): every ledger transaction a
  // request writes records the API key that asked and the request id (lib/audit.ts).
  v1.use((req, _res, next) => withAudit({ requestedBy: req.principal?.id, requestId: req.requestId }, next));
  v1.use(customerRoutes({ pool: deps.pool, clock }));
  v1.use(
    grantRoutes({
      ledger: deps.ledger,
      pool: deps.pool,
      lifecycle: deps.lifecycle,
      logger: deps.logger,
      topUps: deps.topUps,
    }),
  );
  const resolver = new RateCardResolver();
  v1.use(meteringRoutes({ pool: deps.pool, ledger: deps.ledger, resolver, clock, topUps: deps.topUps }));
  const gateway = deps.gateway ?? new SandboxGateway(deps.pool);
  v1.use(
    paymentRoutes({ pool: deps.pool, gateway, payments: deps.payments ?? noTemporal, topUps: deps.topUps, clock }),
  );
  v1.use(topUpRoutes({ pool: deps.pool, gateway, topUps: deps.topUps, clock }));
  v1.use(refundRoutes({ pool: deps.pool, payments: deps.payments ?? noTemporal, clock }));
  v1.use(correctionRoutes({ ledger: deps.ledger, pool: deps.pool }));
  v1.use(rateCardRoutes({ pool: deps.pool, resolver, clock }));
  v1.use(
    holdRoutes({
      pool: deps.pool,
      clock,
      holds: deps.holds ?? noTemporal,
    }),
  );
  v1.use(apiKeyRoutes({ pool: deps.pool }));
  v1.use(auditRoutes({ pool: deps.pool }));
  v1.use(alertRoutes({ pool: deps.pool }));
  v1.use(webhookRoutes({ pool: deps.pool, start: deps.webhooks, logger: deps.logger }));
  v1.use(reconciliationRoutes({ pool: deps.pool, start: deps.reconciliation }));
  v1.use(portalApiRoutes({ pool: deps.pool, streams, tokens, clock, publicUrl: deps.publicUrl }));
  app.use('/v1', v1);

  app.use((req, _res, next) => {
    const p = routeProblem(app.router, req);
    if (p) throw p;
    if (req.method !== 'OPTIONS') throw new HttpProblem(404, 'Not Found', `no route ${req.method} ${req.path}`);
    next();
  });
  app.use(errorHandler(deps.logger));
  return app;
}
