import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * An HTTP proxy in front of a test upstream (localstripe) that records every request and fails
 * the ones a test asks it to:
 * - `status`: answer `status` (503 by default, a Stripe-shaped JSON error) without forwarding;
 * - `drop-before`: close the connection without forwarding;
 * - `drop-after`: forward, let the upstream answer, then close the connection;
 * - `hang-after`: forward, let the upstream answer, and never reply (the client times out).
 */
export type FaultKind = 'status' | 'drop-before' | 'drop-after' | 'hang-after';

export interface Fault {
  kind: FaultKind;
  /** How many matching requests it applies to (default 1). */
  times?: number;
  status?: number;
  /** Only requests with this method (e.g. `POST`) and path (without the query). */
  method?: string;
  path?: string;
}

export interface RecordedRequest {
  method: string;
  /** Without the query. */
  path: string;
  query: string;
  idempotencyKey: string | undefined;
  body: string;
  /** `forwarded` or the fault applied. */
  outcome: 'forwarded' | FaultKind;
  /** The upstream's status when the request reached it. */
  upstreamStatus?: number;
}

export interface FaultProxy {
  url: string;
  requests: RecordedRequest[];
  inject(fault: Fault): void;
  /** Requests matching method and path, e.g. the POSTs to /v1/payment_intents. */
  seen(method: string, path: string): RecordedRequest[];
  /** Forgets the recorded requests and any fault not yet used. */
  reset(): void;
  close(): Promise<void>;
}

const ERROR_TYPES: Record<number, string> = { 429: 'rate_limit_error' };

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const requests: RecordedRequest[] = [];
  const faults: (Fault & { left: number })[] = [];
  const sockets = new Set<Socket>();

  const takeFault = (method: string, path: string): Fault | undefined => {
    const f = faults.find((x) => x.left > 0 && (!x.method || x.method === method) && (!x.path || x.path === path));
    if (f) f.left--;
    return f;
  };

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const [path = '/', query = ''] = (req.url ?? '/').split('?', 2);
      const method = req.method ?? 'GET';
      const fault = takeFault(method, path);
      const key = req.headers['idempotency-key'];
      const rec: RecordedRequest = {
        method,
        path,
        query,
        idempotencyKey: Array.isArray(key) ? key.join(',') : key,
        body: body.toString(),
        outcome: fault?.kind ?? 'forwarded',
      };
      requests.push(rec);

      if (fault?.kind === 'status') {
        const status = fault.status ?? 503;
        const error = { type: ERROR_TYPES[status] ?? 'api_error', message: `injected ${status}` };
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error }));
        return;
      }
      if (fault?.kind === 'drop-before') {
        req.socket.destroy();
        return;
      }
      const up = http.request(
        {
          host: target.hostname,
          port: target.port,
          method,
          path: req.url,
          headers: { ...req.headers, host: target.host, connection: 'close' },
          agent: false,
        },
        (upRes) => {
          const upChunks: Buffer[] = [];
          upRes.on('data', (c: Buffer) => upChunks.push(c));
          upRes.on('end', () => {
            rec.upstreamStatus = upRes.statusCode;
            if (fault?.kind === 'hang-after') return; // the emulator has acted; the client never hears of it
            if (fault?.kind === 'drop-after') {
              req.socket.destroy();
              return;
            }
            const headers = { ...upRes.headers };
            delete headers.connection;
            delete headers['transfer-encoding'];
            res.writeHead(upRes.statusCode ?? 502, headers).end(Buffer.concat(upChunks));
          });
        },
      );
      up.on('error', (err) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`upstream: ${err.message}`);
      });
      up.end(body);
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    inject: (fault) => faults.push({ ...fault, left: fault.times ?? 1 }),
    seen: (method, path) => requests.filter((r) => r.method === method && r.path === path),
    reset: () => {
      requests.length = 0;
      faults.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy(); // hung replies included
        server.close(() => resolve());
      }),
  };
}
