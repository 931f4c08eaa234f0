import type { Request, RequestHandler } from 'express';
import type { z } from 'zod';
import { MAX_DEPTH, segment, unstorable, type Issue } from './body';
import { problem, validationProblem } from './problem';

type Where = 'body' | 'query' | 'params' | 'header';

/** Strings and keys PostgreSQL cannot store, wherever they came from (query, path, header or body). */
function unstorableIn(value: unknown, where: Where): Issue[] {
  const issues: Issue[] = [];
  const todo: { v: unknown; path: string[] }[] = [{ v: value, path: [where] }];
  while (todo.length && issues.length < 10) {
    const { v, path } = todo.pop()!;
    if (typeof v === 'string') {
      const why = unstorable(v);
      if (why) issues.push({ path: path.join('.'), message: why });
    } else if (v && typeof v === 'object' && path.length <= MAX_DEPTH) {
      for (const [k, child] of Object.entries(v)) {
        const why = unstorable(k);
        if (why) issues.push({ path: [...path, segment(k)].join('.'), message: `key ${why}` });
        else todo.push({ v: child, path: [...path, k] });
      }
    }
  }
  return issues;
}

/** Parses one part of the request with its schema; throws a 400 problem listing every issue. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, where: Where) {
  const bad = unstorableIn(value, where);
  if (bad.length) throw problem(400, `invalid ${where}`, { errors: bad });
  const r = schema.safeParse(value);
  if (!r.success) throw validationProblem(r.error, where);
  return r.data;
}

export const body = <S extends z.ZodType>(s: S, req: Request) => parse(s, req.body ?? {}, 'body');
export const query = <S extends z.ZodType>(s: S, req: Request) => parse(s, { ...req.query }, 'query');
export const params = <S extends z.ZodType>(s: S, req: Request) => parse(s, { ...req.params }, 'params');

const decode = (s: string) => {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return null;
  }
};

/**
 * The query parser replaces bytes that are not UTF-8 (`%FF`, an encoded surrogate) with U+FFFD
 * silently; this refuses them, and NUL, before anything reads the query.
 */
export const strictQuery: RequestHandler = (req, _res, next) => {
  const q = req.url.indexOf('?');
  if (q < 0) return next();
  const issues: Issue[] = [];
  for (const part of req.url.slice(q + 1).split('&')) {
    const eq = part.indexOf('=');
    const key = decode(eq < 0 ? part : part.slice(0, eq));
    const value = decode(eq < 0 ? '' : part.slice(eq + 1));
    const bad = 'not valid percent-encoded UTF-8';
    if (key === null) issues.push({ path: 'query', message: `a parameter name is ${bad}` });
    else if (unstorable(key)) issues.push({ path: `query.${segment(key)}`, message: `key ${unstorable(key)}` });
    else if (value === null) issues.push({ path: `query.${key}`, message: bad });
    else if (unstorable(value)) issues.push({ path: `query.${key}`, message: unstorable(value)! });
  }
  if (issues.length) throw problem(400, 'invalid query', { errors: issues.slice(0, 10) });
  next();
};

/** Opaque list cursors: `<kind>:<value>`, base64url. */
export const encodeCursor = (kind: string, value: string) => Buffer.from(`${kind}:${value}`).toString('base64url');

/** The value inside a cursor of this kind; anything else (tampered, out of range) is a 400. */
export function decodeCursor(kind: string, cursor: string, valid: (value: string) => boolean): string {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const value = text.startsWith(`${kind}:`) ? text.slice(kind.length + 1) : null;
  if (value === null || !valid(value))
    throw problem(400, 'invalid cursor', { errors: [{ path: 'query.cursor', message: 'not a cursor of this list' }] });
  return value;
}
