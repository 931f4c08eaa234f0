import http from 'node:http';
import client from 'prom-client';
import type { BatchOutcome } from './messages';

/** The consumer's own Prometheus metrics (the API's are api/metrics.ts): outcomes, batch time, lag. */
export function createConsumerMetrics(topic: string, lag: () => Promise<Map<number, bigint>>) {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const records = new client.Counter({
    name: 'creditflow_ingest_records_total',
    help: 'Usage records consumed from Kafka, by outcome (accepted, duplicate, rejected)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const batches = new client.Histogram({
    name: 'creditflow_ingest_batch_seconds',
    help: 'Time from taking a batch to committing its offsets',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  // Read from the broker at scrape time: the group's committed offset against the partition's end.
  new client.Gauge({
    name: 'creditflow_ingest_lag_records',
    help: 'Records not yet committed by the consumer group, per partition this consumer holds',
    labelNames: ['topic', 'partition'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const [partition, n] of await lag()) this.set({ topic, partition: String(partition) }, Number(n));
    },
  });
  const observe = (o: BatchOutcome, seconds: number) => {
    records.inc({ outcome: 'accepted' }, o.accepted);
    records.inc({ outcome: 'duplicate' }, o.duplicate);
    records.inc({ outcome: 'rejected' }, o.rejected.length);
    batches.observe(seconds);
  };
  return { registry, observe };
}

/** GET /metrics and GET /healthz on their own port. */
export function serveMetrics(registry: client.Registry, port: number, host: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: unknown) =>
          res.writeHead(503, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${String(err)}`),
      );
    } else if (req.method === 'GET' && req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else res.writeHead(404).end();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
