import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { addressRefusal, pinnedLookup, type UrlPolicy } from './url-policy';

export const DELIVERY_TIMEOUT_MS = 10_000;
/** Only this much of a receiver's answer is read (it is not stored: the status is what counts). */
export const MAX_RESPONSE_BYTES = 16 * 1024;

export interface AttemptResult {
  /** The receiver's status code; null when no answer came (refused, timeout, …). */
  statusCode: number | null;
  /** Why the attempt failed; null when delivered. */
  error: string | null;
  latencyMs: number;
  /** Bytes of the response body read (at most MAX_RESPONSE_BYTES, plus the last chunk's overhang). */
  bytesRead: number;
}

// Keep-alive per process: a busy endpoint reuses its connections. The socket was opened to a
// checked address, so reusing it needs no new check.
const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 64 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 64 }),
};

/**
 * One POST. Delivered means a 2xx within the timeout; redirects are never followed (a 3xx is a
 * failed attempt); at most `maxBodyBytes` of the answer are read, then the connection is dropped.
 */
export function postWebhook(
  url: URL,
  body: string,
  headers: Record<string, string>,
  o: { policy: UrlPolicy; timeoutMs?: number; maxBodyBytes?: number; signal?: AbortSignal },
): Promise<AttemptResult> {
  const started = performance.now();
  const limit = o.maxBodyBytes ?? MAX_RESPONSE_BYTES;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  // An IP literal skips the lookup: check it here.
  const literalRefusal = isIP(host) ? addressRefusal(o.policy, host, host) : null;
  if (literalRefusal) return Promise.resolve({ statusCode: null, error: literalRefusal, latencyMs: 0, bytesRead: 0 });
  return new Promise((resolve) => {
    let done = false;
    let bytesRead = 0;
    // Set once the status line arrived: a body that then stalls does not undo the answer.
    let answered: [number, string | null] | null = null;
    const finish = (statusCode: number | null, error: string | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      resolve({ statusCode, error, latencyMs: Math.round(performance.now() - started), bytesRead });
    };
    const req = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'POST',
      agent: agents[url.protocol as 'http:' | 'https:'],
      lookup: pinnedLookup(o.policy),
      headers: {
        ...headers,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'user-agent': 'creditflow-webhooks/1',
      },
    });
    const timer = setTimeout(() => {
      req.destroy();
      if (answered) finish(...answered);
      else finish(null, `timeout after ${o.timeoutMs ?? DELIVERY_TIMEOUT_MS} ms`);
    }, o.timeoutMs ?? DELIVERY_TIMEOUT_MS);
    const onAbort = () => {
      req.destroy();
      finish(null, 'aborted: the worker is stopping');
    };
    o.signal?.addEventListener('abort', onAbort);
    req.on('error', (err: NodeJS.ErrnoException) => finish(null, err.message || err.code || 'request failed'));
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const ok = status >= 200 && status < 300;
      const error = ok
        ? null
        : status >= 300 && status < 400
          ? `HTTP ${status}: redirect not followed`
          : `HTTP ${status}`;
      answered = [status, error];
      res.on('data', (chunk: Buffer) => {
        bytesRead += chunk.length;
        if (bytesRead >= limit) {
          // Enough: drop the connection rather than read (or buffer) the rest.
          res.destroy();
          finish(status, error);
        }
      });
      res.on('end', () => finish(status, error));
      res.on('error', () => finish(status, error));
      res.on('close', () => finish(status, error));
    });
    req.end(body);
  });
}
