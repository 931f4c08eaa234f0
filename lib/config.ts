import { z } from 'zod';

/** All configuration comes from the environment through this one schema; bad values fail at start-up. */
export const configSchema = z
  .object({
    CREDITFLOW_MODE: z.enum(['development', 'production']).default('production'),
    PORT: z.coerce.number().int().min(0).max(65535).default(3000),
    HOST: z.string().default('0.0.0.0'),
    /** The service's connection: a least-privileged role when DATABASE_OWNER_URL is set (README "Database roles"). */
    DATABASE_URL: z.string().url().default('postgres://postgres@127.0.0.1:5433/creditflow'),
    /** The schema owner, for migrations only (scripts/migrate.ts); never given to the API or worker. */
    DATABASE_OWNER_URL: z.string().url().optional(),
    DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(20),
    /** How long a request waits for a database connection before failing (503) instead of hanging. */
    DATABASE_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5000),
    TEMPORAL_ADDRESS: z.string().min(1).default('127.0.0.1:7233'),
    TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
    TEMPORAL_TASK_QUEUE: z.string().min(1).default('creditflow'),
    CREDITFLOW_ADMIN_KEY: z.string().min(24, 'CREDITFLOW_ADMIN_KEY must be at least 24 characters').optional(),
    BODY_LIMIT: z.string().default('1mb'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Default: `sandbox` in development mode, `manual` (never charges) in production. */
    PAYMENT_GATEWAY: z.enum(['sandbox', 'stripe', 'manual']).optional(),
    STRIPE_SECRET_KEY: z.string().min(1).optional(),
    /** An emulator (localstripe) or proxy instead of api.stripe.com, e.g. http://127.0.0.1:8420. */
    STRIPE_API_BASE: z.string().url().optional(),
    /** How long one gateway call may take before it counts as a (retryable) failure. */
    GATEWAY_TIMEOUT_MS: z.coerce.number().int().min(100).max(120_000).default(10_000),
    /** Webhook hosts (names or IPs, comma-separated) allowed although private or loopback (production mode). */
    WEBHOOK_ALLOWED_HOSTS: z.string().default(''),
    /** The worker's own Prometheus metrics (Temporal SDK: task latencies, slots, polls…); `off` disables. */
    WORKER_METRICS_ADDRESS: z
      .string()
      .regex(/^(off|\d{1,3}(\.\d{1,3}){3}:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5})$/, 'ip:port (e.g. 0.0.0.0:9464) or off')
      .default('127.0.0.1:9464'),
    /** How long /metrics may reuse its database figures (a scrape storm reads the database once). */
    METRICS_CACHE_MS: z.coerce.number().int().min(0).max(300_000).default(5000),
    /** When the reconciliation Schedule runs (cron, UTC; API.md "Operations"). */
    RECONCILIATION_CRON: z.string().min(9).default('0 2 * * *'),
    /** Stored replies of Idempotency-Key requests older than this are purged (the ledger's keys never are). */
    IDEMPOTENCY_RETENTION_DAYS: z.coerce
      .number()
      .int()
      .min(7, 'IDEMPOTENCY_RETENTION_DAYS must be at least 7 (clients retry for days)')
      .max(36_500)
      .default(30),
    /** When the housekeeping Schedule runs (cron, UTC). */
    HOUSEKEEPING_CRON: z.string().min(9).default('30 3 * * *'),
    /** Signs portal tokens; every API process needs the same one. `npm start` keeps one in its data dir. */
    PORTAL_TOKEN_SECRET: z.string().min(32, 'PORTAL_TOKEN_SECRET must be at least 32 characters').optional(),
    /** Live balance streams one API process serves at once; more are refused with 503 + Retry-After. */
    BALANCE_STREAM_MAX: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
    BALANCE_STREAM_HEARTBEAT_MS: z.coerce.number().int().min(100).max(300_000).default(15_000),
    /** The public origin of the API, for links it hands out (portal URLs); default: the request's. */
    PUBLIC_URL: z.string().url().optional(),
    /** Kafka ingestion (ingest/consumer.ts): brokers, comma-separated host:port. */
    KAFKA_BROKERS: z.string().min(1).default('127.0.0.1:9092'),
    /** The usage topic (key = customer id); rejected records go to `<topic>.rejected`. */
    KAFKA_TOPIC: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,240}$/, 'KAFKA_TOPIC: 1–240 of A-Za-z0-9._-')
      .default('creditflow.usage'),
    KAFKA_GROUP_ID: z.string().min(1).default('creditflow-ingest'),
    /** Partitions of the topics the consumer creates when they are missing. */
    KAFKA_TOPIC_PARTITIONS: z.coerce.number().int().min(1).max(10_000).default(4),
    /** Records per batch of one partition (its offsets committed after the database commit). */
    KAFKA_BATCH_MAX: z.coerce.number().int().min(1).max(100_000).default(2000),
    /** A consumer silent this long is dropped from the group and its partitions reassigned. */
    KAFKA_SESSION_TIMEOUT_MS: z.coerce.number().int().min(6000).max(300_000).default(10_000),
    /** How long the consumer retries a batch the database refuses before it exits (and replays). */
    KAFKA_STORE_RETRY_MS: z.coerce.number().int().min(1000).max(3_600_000).default(60_000),
    /** The consumer's own /metrics (lag, outcomes) and /healthz; 0 picks a free port. */
    CONSUMER_METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9465),
  })
  .superRefine((c, ctx) => {
    if (c.PAYMENT_GATEWAY === 'stripe' && !c.STRIPE_SECRET_KEY)
      ctx.addIssue({
        code: 'custom',
        path: ['STRIPE_SECRET_KEY'],
        message: 'PAYMENT_GATEWAY=stripe needs STRIPE_SECRET_KEY',
      });
  });

/** The payment gateway the service charges through (see PAYMENT_GATEWAY). */
export const gatewayName = (c: Config) =>
  c.PAYMENT_GATEWAY ?? (c.CREDITFLOW_MODE === 'development' ? 'sandbox' : 'manual');

export type Config = z.infer<typeof configSchema>;

/** The documented development key: bootstrapped only in development mode, never in production. */
export const DEV_ADMIN_KEY = 'cf_dev_admin_key_for_local_use_only';

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
