import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { HttpProblem, problem } from './problem';

/**
 * Request bodies: JSON only, UTF-8 only, decoded strictly, and refused unless PostgreSQL can store
 * every string in them. Our own reader (not body-parser) because body-parser accepts other charsets,
 * replaces invalid bytes silently and lets duplicate keys and NUL characters through.
 */

export interface Issue {
  path: string;
  message: string;
}

/** Deeper than any request shape we have; bounds the recursive code that sees a body later. */
export const MAX_DEPTH = 32;
const MAX_ISSUES = 10;

const UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** Size strings as BODY_LIMIT takes them: "1mb", "64kb", "512b", "1048576". */
export function parseBytes(limit: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(limit);
  if (!m) throw new Error(`invalid body limit ${JSON.stringify(limit)}`);
  return Math.floor(Number(m[1]) * UNITS[(m[2] ?? 'b').toLowerCase()]!);
}

/** Why PostgreSQL text cannot hold this string (NUL, or not well-formed UTF-16), or null. */
export function unstorable(s: string): string | null {
  if (s.includes('\u0000')) return 'must not contain the NUL character (\\u0000)';
  if (/\p{Cs}/u.test(s)) return 'must be well-formed Unicode (no lone surrogates)';
  return null;
}

/** A path segment that is safe to echo back: control characters and lone surrogates are shown escaped. */
export const segment = (s: string) =>
  s.replace(/[\p{Cc}\p{Cs}]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

type Frame = { object: true; keys: Set<string>; key: string; expectKey: boolean } | { object: false; index: number };

/**
 * One pass over JSON text that JSON.parse has accepted: duplicate keys (JSON.parse keeps the last
 * silently), unstorable keys and strings, and nesting depth, each with the path it occurs at.
 */
export function scanJson(text: string, root = 'body'): Issue[] {
  const issues: Issue[] = [];
  const stack: Frame[] = [];
  const path = () => [root, ...stack.map((f) => (f.object ? segment(f.key) : String(f.index)))].join('.');
  for (let i = 0; i < text.length && issues.length < MAX_ISSUES; i++) {
    const c = text[i];
    const top = stack[stack.length - 1];
    if (c === '{' || c === '[') {
      if (stack.length >= MAX_DEPTH) return [{ path: path(), message: `nested deeper than ${MAX_DEPTH} levels` }];
      stack.push(c === '{' ? { object: true, keys: new Set(), key: '', expectKey: true } : { object: false, index: 0 });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',' && top) {
      if (top.object) top.expectKey = true;
      else top.index++;
    } else if (c === ':' && top?.object) {
      top.expectKey = false;
    } else if (c === '"') {
      // The closing quote is the first one not escaped by an odd run of backslashes.
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) return issues; // unreachable for text JSON.parse accepted
        let b = j - 1;
        while (text[b] === '\\') b--;
        if ((j - 1 - b) % 2 === 0) break;
      }
      const raw = text.slice(i + 1, j);
      // Unescaped text is well-formed and NUL-free (the decoder and JSON grammar saw to that).
      const escaped = raw.includes('\\');
      const s = escaped ? (JSON.parse(`"${raw}"`) as string) : raw;
      i = j;
      const isKey = top?.object === true && top.expectKey;
      if (isKey) {
        top.key = s;
        if (top.keys.has(s)) issues.push({ path: path(), message: 'duplicate key' });
        top.keys.add(s);
      }
      const why = escaped ? unstorable(s) : null;
      if (why) issues.push({ path: path(), message: isKey ? `key ${why}` : why });
    }
  }
  return issues;
}

/** Media type and charset of a Content-Type header, lower-cased. */
function contentType(header: string | undefined): { type: string; charset?: string } | null {
  if (!header) return null;
  const [type, ...params] = header.split(';');
  let charset: string | undefined;
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq > 0 && p.slice(0, eq).trim().toLowerCase() === 'charset')
      charset = p
        .slice(eq + 1)
        .trim()
        .replace(/^"(.*)"$/, '$1')
        .toLowerCase();
  }
  return { type: type!.trim().toLowerCase(), charset };
}

const isJson = (type: string) => type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type);

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () => problem(413, 'the request body is too large');
  if (Number(req.headers['content-length']) > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (err: HttpProblem | null) => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      // Whatever is left of an oversized body keeps flowing into the void, so the connection stays usable.
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) finish(tooLarge());
      else chunks.push(chunk);
    };
    const onEnd = () => finish(null);
    const onError = () => finish(problem(400, 'the request body could not be read'));
    const onClose = () => finish(problem(400, 'the request body could not be read'));
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

const bodyProblem = (detail: string) => problem(400, detail, { errors: [{ path: 'body', message: detail }] });

const hasBody = (req: IncomingMessage) =>
  req.headers['transfer-encoding'] !== undefined || req.headers['content-length'] !== undefined;

/** Parses the JSON body of POST/PUT/PATCH into req.body; any other method's body is ignored. */
export function jsonBody(opts: { limit: string }): RequestHandler {
  const limit = parseBytes(opts.limit);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  return async (req, _res, next) => {
    req.body = undefined;
    if (!['POST', 'PUT', 'PATCH'].includes(req.method)) return next();
    const ct = contentType(req.headers['content-type']);
    if (!hasBody(req) || !ct || !isJson(ct.type)) throw problem(415, 'the request body must be application/json');
    if (ct.charset !== undefined && ct.charset !== 'utf-8') throw problem(415, 'the request body must be UTF-8 JSON');
    const encoding = req.headers['content-encoding']?.trim().toLowerCase();
    if (encoding && encoding !== 'identity') throw problem(415, `Content-Encoding ${encoding} is not supported`);
    const raw = await readBody(req, limit);
    if (raw.length === 0) {
      req.body = {};
      return next();
    }
    let text: string;
    try {
      text = decoder.decode(raw);
    } catch {
      throw bodyProblem('the request body is not valid UTF-8');
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw bodyProblem('the request body is not valid JSON');
    }
    if (value === null || typeof value !== 'object') throw bodyProblem('the request body must be a JSON object');
    const issues = scanJson(text);
    if (issues.length) throw problem(400, 'invalid body', { errors: issues });
    req.body = value;
    next();
  };
}
