import express, { type RequestHandler } from 'express';
import type { Pool } from '../db/pool';
import type { Ledger } from '../ledger/ledger';
import type { Logger } from '../lib/logger';
import { authenticate } from './auth';
import { createMetrics } from './metrics';
import { buildOpenApi, renderDocs } from './openapi';
import { errorHandler, HttpProblem, problem } from './problem';
import { customerRoutes } from './routes/customers';
import { grantRoutes } from './routes/grants';
import { meteringRoutes } from './routes/metering';
import { rateCardRoutes } from './routes/rate-cards';
import { holdRoutes } from './routes/holds';
import type { HoldsClient } from '../client/holds';
import { RateCardResolver } from '../metering/rate-cards';

export interface AppDeps {
  pool: Pool;
  ledger: Ledger;
  logger: Logger;
  /** Resolves when Temporal answers; rejects otherwise. */
  temporalReady: () => Promise<void>;
  /** The reservation client (over the process's one Temporal connection). */
  holds?: () => Promise<HoldsClient>;
  /** Starts or signals a customer's credit-lifecycle workflow. */
  lifecycle?: (customerId: string) => Promise<void>;
  bodyLimit?: string;
  clock?: () => Date;
}

const withTimeout = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), ms).unref())]);

/** JSON only: a body-carrying request with another content type is a 415 before anything parses it. */
const requireJson: RequestHandler = (req, _res, next) => {
  if (['POST', 'PUT', 'PATCH'].includes(req.method) && !req.is(['application/json', 'application/*+json'])) {
    throw problem(415, 'the request body must be application/json');
  }
  next();
};

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  const clock = deps.clock ?? (() => new Date());
  const metrics = createMetrics();
  const openapi = buildOpenApi();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(metrics.middleware);

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const [pg, temporal] = await Promise.allSettled([
      withTimeout(deps.pool.query('SELECT 1'), 2000),
      withTimeout(deps.temporalReady(), 2000),
    ]);
    const checks = {
      postgres: pg.status === 'fulfilled' ? 'up' : 'down',
      temporal: temporal.status === 'fulfilled' ? 'up' : 'down',
    };
    const ready = checks.postgres === 'up' && checks.temporal === 'up';
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

  const v1 = express.Router();
  v1.use(authenticate(deps.pool));
  v1.use(requireJson);
  v1.use(
    express.json({ limit: deps.bodyLimit ?? '1mb', strict: true, type: ['application/json', 'application/*+json'] }),
  );
  v1.use(customerRoutes({ pool: deps.pool, clock }));
  v1.use(grantRoutes({ ledger: deps.ledger, pool: deps.pool, lifecycle: deps.lifecycle, logger: deps.logger }));
  const resolver = new RateCardResolver();
  v1.use(meteringRoutes({ pool: deps.pool, ledger: deps.ledger, resolver, clock }));
  v1.use(rateCardRoutes({ pool: deps.pool, resolver, clock }));
  v1.use(
    holdRoutes({
      pool: deps.pool,
      clock,
      holds: deps.holds ?? (() => Promise.reject(Object.assign(new Error('Temporal is not configured'), { code: 14 }))),
    }),
  );
  app.use('/v1', v1);

  app.use((req, _res, next) => next(new HttpProblem(404, 'Not Found', `no route ${req.method} ${req.path}`)));
  app.use(errorHandler(deps.logger));
  return app;
}
