import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { configSchema } from '../../lib/config';
import { ROOT } from '../support/paths';

/** No Docker engine runs here: check the compose file's wiring statically instead. */
interface Service {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}

const compose = parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>;
};
const s = compose.services;
const configKeys = Object.keys(configSchema.shape);

describe('docker-compose.yml', () => {
  it('has the production-shaped services', () => {
    expect(Object.keys(s)).toEqual(
      expect.arrayContaining(['postgres', 'temporal-schema', 'temporal', 'temporal-ui', 'api', 'worker', 'migrate']),
    );
    expect(s.temporal!.image).toMatch(/^temporalio\/server:/);
    expect(s['temporal-ui']!.image).toMatch(/^temporalio\/ui:/);
    expect(s.temporal!.environment!.DB).toBe('postgres12');
    expect(s.temporal!.depends_on!['temporal-schema']!.condition).toBe('service_completed_successfully');
  });

  it('publishes the API on 3000, Temporal gRPC on 7233 and the Web UI on 8233', () => {
    expect(s.api!.ports).toContain('3000:3000');
    expect(s.temporal!.ports).toContain('7233:7233');
    expect(s['temporal-ui']!.ports).toContain('8233:8080');
  });

  it.each(['api', 'worker', 'migrate'])(
    '%s is built from the Dockerfile and runs a file the build produces',
    (name) => {
      const svc = s[name]!;
      expect(svc.build).toBe('.');
      const entry = svc.command!.find((c) => c.startsWith('dist/'))!;
      const source = entry.replace(/^dist\//, '').replace(/\.js$/, '.ts');
      expect(existsSync(path.join(ROOT, source))).toBe(true);
    },
  );

  it.each(['api', 'worker', 'migrate'])('%s gets only env names the app reads, and the ones it needs', (name) => {
    const env = s[name]!.environment!;
    for (const key of Object.keys(env)) expect(configKeys).toContain(key);
    expect(env.DATABASE_URL).toMatch(/@postgres:5432\/creditflow$/);
    expect(env.CREDITFLOW_MODE).toBe('production');
    if (name !== 'migrate') expect(env.TEMPORAL_ADDRESS).toBe('temporal:7233');
  });

  it('never ships a default admin key or password: both must come from the environment', () => {
    expect(s.api!.environment!.CREDITFLOW_ADMIN_KEY).toMatch(/^\$\{CREDITFLOW_ADMIN_KEY:\?/);
    expect(s.postgres!.environment!.POSTGRES_PASSWORD).toMatch(/^\$\{POSTGRES_PASSWORD:\?/);
  });

  it('orders start-up with health checks: migrations and Temporal set-up before api and worker', () => {
    for (const name of ['postgres', 'temporal', 'api']) expect(s[name]!.healthcheck).toBeDefined();
    for (const name of ['api', 'worker']) {
      expect(s[name]!.depends_on!.migrate!.condition).toBe('service_completed_successfully');
      expect(s[name]!.depends_on!['temporal-setup']!.condition).toBe('service_completed_successfully');
    }
    expect(s['temporal-setup']!.command!.join(' ')).toContain('CustomerId');
  });

  it('the Dockerfile builds every folder the runtime imports', () => {
    const docker = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    for (const dir of [
      'domain',
      'db',
      'ledger',
      'lib',
      'api',
      'worker',
      'workflows',
      'activities',
      'metering',
      'migrations',
    ]) {
      expect(docker).toMatch(new RegExp(`COPY ${dir} ${dir}`));
    }
  });
});
