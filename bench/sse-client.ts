import http from 'node:http';

export interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
  /** performance.now() when the event's last line arrived */
  at: number;
}

/** A minimal Server-Sent Events reader over node:http (no pooling: thousands may be open at once). */
export interface SseStream {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body when the answer was not a stream (a problem+json). */
  body: string;
  events: SseEvent[];
  comments: number;
  ended: Promise<void>;
  isEnded: () => boolean;
  /** Resolves with the first event (from index `from`) that matches, or rejects after `ms`. */
  next: (match: (e: SseEvent) => boolean, ms?: number, from?: number) => Promise<SseEvent>;
  close: () => void;
}

export function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const events: SseEvent[] = [];
      const waiters = new Set<() => void>();
      let buffer = '';
      let body = '';
      let done = false;
      const stream: SseStream = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        body: '',
        events,
        comments: 0,
        ended: new Promise((r) =>
          res.on('close', () => {
            done = true;
            waiters.forEach((w) => w());
            r();
          }),
        ),
        isEnded: () => done,
        next: (match, ms = 5000, from = 0) =>
          new Promise((ok, fail) => {
            const check = () => {
              const e = events.slice(from).find(match);
              if (e) return (waiters.delete(check), clearTimeout(timer), ok(e), true);
              if (done) return (waiters.delete(check), clearTimeout(timer), fail(new Error('stream ended')), true);
              return false;
            };
            const timer = setTimeout(() => {
              waiters.delete(check);
              fail(new Error(`no matching event within ${ms} ms (${events.length} events)`));
            }, ms);
            if (!check()) waiters.add(check);
          }),
        close: () => req.destroy(),
      };
      res.setEncoding('utf8');
      const sse = (res.headers['content-type'] ?? '').startsWith('text/event-stream');
      res.on('data', (chunk: string) => {
        if (!sse) {
          body += chunk;
          stream.body = body;
          return;
        }
        buffer += chunk;
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const e: SseEvent = { id: undefined, event: 'message', data: '', at: performance.now() };
          let fields = 0;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) stream.comments++;
            else if (line.startsWith('id: ')) e.id = line.slice(4);
            else if (line.startsWith('event: ')) e.event = line.slice(7);
            else if (line.startsWith('data: ')) {
              e.data += line.slice(6);
              fields++;
            }
          }
          if (fields) {
            events.push(e);
            waiters.forEach((w) => w());
          }
        }
      });
      res.on('error', () => undefined);
      resolve(stream);
    });
    req.on('error', reject);
  });
}
