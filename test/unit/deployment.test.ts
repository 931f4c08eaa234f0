import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { parse } from 'yaml';
import { configSchema, gatewayName, loadConfig } from '../../lib/config';
import { APP_ROLE } from '../../lib/db-roles';
import { ROOT } from '../support/paths';

/**
 * No Docker engine runs here: the compose file and the Dockerfile are checked statically against
 * what the code needs — the build's real output paths, the config schema, the health routes.
 */
interface Service {
  image?: string;
  build?: string;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  restart?: string;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  deploy?: { replicas?: number };
}

const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
};
const s = compose.services;
const names = Object.keys(s);
const ours = names.filter((n) => s[n]!.build !== undefined);
const configKeys = Object.keys(configSchema.shape);

const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const stages = dockerfile.split(/^FROM /m).slice(1);
const buildStage = stages[0]!;
const runtimeStage = stages[stages.length - 1]!;
/** `COPY a b dest` lines of a stage (not --from): [sources, dest]. */
const copies = (stage: string) =>
  [...stage.matchAll(/^COPY (?!--from)(.+) (\S+)$/gm)].map((m) => [m[1]!.split(' '), m[2]!] as const);
const copiedInto = (stage: string) => new Set(copies(stage).flatMap(([from]) => from));

/** What `tsc -p tsconfig.build.json` emits: each source file of the build → its path under outDir. */
function buildOutputs(): Map<string, string> {
  const file = path.join(ROOT, 'tsconfig.build.json');
  const parsed = ts.getParsedCommandLineOfConfigFile(
    file,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      },
    },
  )!;
  const { outDir, rootDir } = parsed.options;
  const out = new Map<string, string>();
  for (const f of parsed.fileNames) {
    if (!f.endsWith('.ts') || f.endsWith('.d.ts')) continue;
    const js = path.join(outDir!, path.relative(rootDir!, f)).replace(/\.ts$/, '.js');
    out.set(path.relative(ROOT, js), path.relative(ROOT, f));
  }
  return out;
}
const outputs = buildOutputs();

/** Every local source file an entry point loads (static imports, dynamic imports, require.resolve). */
function localClosure(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (rel: string) => {
    if (seen.has(rel)) return;
    seen.add(rel);
    const src = readFileSync(path.join(ROOT, rel), 'utf8');
    const specs = [...src.matchAll(/(?:from |import\(|require(?:\.resolve)?\()\s*'(\.{1,2}\/[^']*)'/g)].map(
      (m) => m[1]!,
    );
    for (const spec of specs) {
      const base = path.join(path.dirname(rel), spec);
      const hit = [`${base}.ts`, path.join(base, 'index.ts')].find((c) => existsSync(path.join(ROOT, c)));
      if (hit) visit(hit);
      else if (!/\.json$/.test(spec)) throw new Error(`${rel}: cannot resolve ${spec}`);
    }
  };
  visit(entry);
  return seen;
}

/**
 * Compose interpolation: `${NAME:?message}` / `${NAME}` → a value a deployer would give;
 * `${NAME:-default}` → its default (what an unset optional variable gives).
 */
const interpolate = (v: string) =>
  v
    .replace(/\$\{[A-Z_]+:-([^}]*)\}/g, (_m, dflt: string) => dflt)
    .replace(/\$\{([A-Z_]+)(?::\?[^}]*)?\}/g, (_m, name: string) =>
      ['CREDITFLOW_ADMIN_KEY', 'PORTAL_TOKEN_SECRET'].includes(name) ? 'k'.repeat(32) : `secret-${name.toLowerCase()}`,
    );
const entryOf = (svc: Service) => svc.command!.find((c) => c.startsWith('dist/'))!;
const portsOf = (svc: Service) => (svc.ports ?? []).map((p) => p.split(':').map(Number));

describe('docker-compose.yml', () => {
  it('has the production-shaped services', () => {
    expect(names).toEqual(
      expect.arrayContaining([
        'postgres',
        'temporal-schema',
        'temporal',
        'temporal-ui',
        'kafka',
        'api',
        'worker',
        'consumer',
        'migrate',
      ]),
    );
    expect(s.temporal!.image).toMatch(/^temporalio\/server:/);
    expect(s['temporal-ui']!.image).toMatch(/^temporalio\/ui:/);
    expect(s.temporal!.environment!.DB).toBe('postgres12');
    expect(ours.sort()).toEqual(['api', 'consumer', 'migrate', 'worker']);
  });

  it.each(names)('%s has exactly one of a pinned image or a build context with a Dockerfile', (name) => {
    const svc = s[name]!;
    expect([svc.image, svc.build].filter((x) => x !== undefined)).toHaveLength(1);
    if (svc.image) expect(svc.image).toMatch(/^[a-z0-9./_-]+:(?!latest$)[\w.-]+$/);
    else expect(existsSync(path.join(ROOT, svc.build!, 'Dockerfile'))).toBe(true);
  });

  it.each(['api', 'worker', 'consumer', 'migrate'])(
    '%s runs `node dist/…js`, a file that tsc -p tsconfig.build.json emits (and emitted in this run)',
    (name) => {
      const svc = s[name]!;
      expect(svc.command![0]).toBe('node');
      const entry = entryOf(svc);
      expect(outputs.get(entry)).toBeDefined(); // a source of the build maps onto exactly this output path
      expect(existsSync(path.join(ROOT, entry))).toBe(true); // global setup ran that very build
    },
  );

  it.each(['api', 'worker', 'consumer', 'migrate'])(
    '%s: every folder its entry point loads is copied into the Docker build stage',
    (name) => {
      const source = outputs.get(entryOf(s[name]!))!;
      const folders = new Set([...localClosure(source)].map((f) => f.split(path.sep)[0]!));
      const inBuild = copiedInto(buildStage);
      for (const folder of folders) expect([folder, inBuild.has(folder)]).toEqual([folder, true]);
      expect(buildStage).toMatch(/RUN npx tsc -p tsconfig\.build\.json/);
      for (const f of ['tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json'])
        expect(inBuild.has(f)).toBe(true);
    },
  );

  it('the runtime image holds dist/, node_modules and migrations/ where the compiled code looks for them', () => {
    expect(runtimeStage).toMatch(/^WORKDIR \/app$/m);
    expect(runtimeStage).toMatch(/^COPY --from=build \/app\/dist dist$/m);
    expect(runtimeStage).toMatch(/^COPY --from=build \/app\/node_modules node_modules$/m);
    // lib/migrate.ts, compiled to /app/dist/lib, resolves ../../migrations = /app/migrations.
    expect(copies(runtimeStage)).toContainEqual([['migrations'], 'migrations']);
    expect(path.resolve('/app/dist/lib', '..', '..', 'migrations')).toBe('/app/migrations');
    const cmd = /^CMD \["node", "([^"]+)"\]$/m.exec(runtimeStage)![1]!;
    expect(outputs.has(cmd)).toBe(true);
  });

  it.each(['api', 'worker', 'consumer', 'migrate'])(
    '%s gets only env names the config schema reads; they load as a valid config pointing at the postgres and temporal services',
    (name) => {
      const env = s[name]!.environment!;
      for (const key of Object.keys(env)) expect([key, configKeys.includes(key)]).toEqual([key, true]);
      const config = loadConfig(Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(String(v))])));
      expect(config.CREDITFLOW_MODE).toBe('production');
      expect(gatewayName(config)).toBe('manual'); // never the sandbox (free credits) unless a deployer says stripe
      const db = new URL(config.DATABASE_URL);
      const pg = s.postgres!.environment!;
      // The service connects as the least-privileged role (README "Database roles"), never the owner.
      expect([db.hostname, db.port, db.pathname.slice(1), db.username]).toEqual([
        'postgres',
        '5432',
        pg.POSTGRES_DB,
        APP_ROLE,
      ]);
      expect(db.username).not.toBe(pg.POSTGRES_USER);
      expect(env.DATABASE_URL).toMatch(/:\$\{CREDITFLOW_DB_PASSWORD:\?[^}]*\}@/); // a secret, no default
      // Only migrate holds the owner's connection.
      if (name === 'migrate') {
        const owner = new URL(config.DATABASE_OWNER_URL!);
        expect([owner.host, owner.pathname, owner.username]).toEqual([db.host, db.pathname, pg.POSTGRES_USER]);
        expect(owner.password).toBe(interpolate(pg.POSTGRES_PASSWORD!));
      } else expect(config.DATABASE_OWNER_URL).toBeUndefined();
      if (name !== 'migrate') {
        const [host, port] = config.TEMPORAL_ADDRESS.split(':');
        expect(names).toContain(host);
        expect(portsOf(s[host!]!).map(([, inside]) => inside)).toContain(Number(port));
      }
    },
  );

  it('never ships a default admin key or password: both must come from the environment', () => {
    expect(s.api!.environment!.CREDITFLOW_ADMIN_KEY).toMatch(/^\$\{CREDITFLOW_ADMIN_KEY:\?/);
    expect(s.postgres!.environment!.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?/);
  });

  it('gives every API replica the same portal-token secret (a token signed by one verifies on the others)', () => {
    expect(s.api!.deploy?.replicas ?? 1).toBeGreaterThan(1);
    expect(s.api!.environment!.PORTAL_TOKEN_SECRET).toMatch(/^\$\{PORTAL_TOKEN_SECRET:\?/);
  });

  it('publishes the API on the port it listens on (one host port per replica), Temporal gRPC on 7233 and the Web UI on 8233', () => {
    const [hostPorts, inside] = s.api!.ports![0]!.split(':');
    expect(Number(inside)).toBe(Number(s.api!.environment!.PORT));
    const [first, last = first] = hostPorts!.split('-').map(Number);
    expect(first).toBe(3000);
    expect(last! - first! + 1).toBe(s.api!.deploy!.replicas);
    expect(portsOf(s.temporal!)).toEqual([[7233, 7233]]);
    expect(portsOf(s['temporal-ui']!)).toEqual([[8233, 8080]]);
  });

  it('the API health check fetches /readyz (or /healthz) on the port the API listens on; the app serves it', () => {
    const probe = s.api!.healthcheck!.test.join(' ');
    const url = /https?:\/\/127\.0\.0\.1:(\d+)(\/\w+)/.exec(probe)!;
    expect(Number(url[1])).toBe(Number(s.api!.environment!.PORT));
    expect(['/readyz', '/healthz']).toContain(url[2]);
    expect(readFileSync(path.join(ROOT, 'api/app.ts'), 'utf8')).toContain(`app.get('${url[2]}'`);
    const pg = s.postgres!.environment!;
    expect(s.postgres!.healthcheck!.test.join(' ')).toContain(`pg_isready -U ${pg.POSTGRES_USER} -d ${pg.POSTGRES_DB}`);
    expect(s.temporal!.healthcheck!.test.join(' ')).toMatch(/cluster health/);
  });

  it('depends_on: known services, valid conditions, "healthy" only on services with a health check', () => {
    for (const [name, svc] of Object.entries(s)) {
      for (const [dep, { condition }] of Object.entries(svc.depends_on ?? {})) {
        const where = `${name} → ${dep}`;
        expect([where, names.includes(dep)]).toEqual([where, true]);
        expect(['service_started', 'service_healthy', 'service_completed_successfully']).toContain(condition);
        if (condition === 'service_healthy') expect([where, s[dep]!.healthcheck !== undefined]).toEqual([where, true]);
        if (condition === 'service_completed_successfully') expect([where, s[dep]!.restart]).toEqual([where, 'no']);
      }
    }
  });

  it('orders start-up: Postgres healthy → schema and migrations; Temporal set up → api and worker', () => {
    expect(s.migrate!.depends_on!.postgres!.condition).toBe('service_healthy');
    expect(s['temporal-schema']!.depends_on!.postgres!.condition).toBe('service_healthy');
    expect(s.temporal!.depends_on!['temporal-schema']!.condition).toBe('service_completed_successfully');
    for (const name of ['api', 'worker']) {
      expect(s[name]!.depends_on!.migrate!.condition).toBe('service_completed_successfully');
      expect(s[name]!.depends_on!['temporal-setup']!.condition).toBe('service_completed_successfully');
      expect(s[name]!.restart).toBe('unless-stopped');
    }
    expect(s['temporal-setup']!.command!.join(' ')).toContain('--name CustomerId --type Keyword');
  });

  it('Postgres keeps its data in a named volume declared at the top level', () => {
    const mounts = (s.postgres!.volumes ?? []).map((v) => v.split(':'));
    const data = mounts.find(([, target]) => target === '/var/lib/postgresql/data');
    expect(data).toBeDefined();
    expect(Object.keys(compose.volumes ?? {})).toContain(data![0]);
  });
});

describe('docker-compose.yml: scaling out', () => {
  it.each(['api', 'worker', 'consumer'])('%s runs in several replicas', (name) => {
    expect(s[name]!.deploy?.replicas).toBeGreaterThanOrEqual(2);
  });

  it("sets Temporal's history shard count explicitly (it can never change after the first start)", () => {
    const shards = Number(s.temporal!.environment!.NUM_HISTORY_SHARDS);
    expect(Number.isInteger(shards) && shards >= 4).toBe(true);
  });

  it('runs Kafka from the official image in KRaft mode, its log in a named volume', () => {
    const k = s.kafka!;
    const env = k.environment!;
    expect(k.image).toMatch(/^apache\/kafka:\d/);
    expect(env.KAFKA_PROCESS_ROLES!.split(',').sort()).toEqual(['broker', 'controller']);
    expect(Object.keys(env).some((key) => key.includes('ZOOKEEPER'))).toBe(false);
    expect(env.KAFKA_CONTROLLER_QUORUM_VOTERS).toBe(`${env.KAFKA_NODE_ID}@kafka:9093`);
    const data = (k.volumes ?? []).map((v) => v.split(':')).find(([, target]) => target === env.KAFKA_LOG_DIRS);
    expect(Object.keys(compose.volumes ?? {})).toContain(data![0]);
    expect(k.healthcheck!.test.join(' ')).toContain('--bootstrap-server localhost:9092');
  });

  it('the consumer reaches Kafka at an address the broker advertises, after the migrations, and has work for every replica', () => {
    const c = s.consumer!;
    const config = loadConfig(
      Object.fromEntries(Object.entries(c.environment!).map(([k, v]) => [k, interpolate(String(v))])),
    );
    expect(s.kafka!.environment!.KAFKA_ADVERTISED_LISTENERS).toContain(`//${config.KAFKA_BROKERS}`);
    expect(c.depends_on!.kafka!.condition).toBe('service_healthy');
    expect(c.depends_on!.migrate!.condition).toBe('service_completed_successfully');
    expect(c.restart).toBe('unless-stopped');
    expect(config.KAFKA_TOPIC_PARTITIONS).toBeGreaterThanOrEqual(c.deploy!.replicas!);
    expect(Number(s.kafka!.environment!.KAFKA_NUM_PARTITIONS)).toBe(config.KAFKA_TOPIC_PARTITIONS);
  });

  it("the consumer's health check fetches /healthz on its metrics port; the consumer serves it", () => {
    const c = s.consumer!;
    const url = /https?:\/\/127\.0\.0\.1:(\d+)(\/\w+)/.exec(c.healthcheck!.test.join(' '))!;
    expect(Number(url[1])).toBe(Number(c.environment!.CONSUMER_METRICS_PORT));
    expect(url[2]).toBe('/healthz');
    expect(readFileSync(path.join(ROOT, 'ingest/metrics.ts'), 'utf8')).toContain(`req.url === '${url[2]}'`);
  });
});
