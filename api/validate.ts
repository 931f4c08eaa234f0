import type { Request } from 'express';
import type { z } from 'zod';
import { validationProblem } from './problem';

/** Parses one part of the request with its schema; throws a 400 problem listing every issue. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query' | 'params' | 'header') {
  const r = schema.safeParse(value);
  if (!r.success) throw validationProblem(r.error, where);
  return r.data;
}

export const body = <S extends z.ZodType>(s: S, req: Request) => parse(s, req.body ?? {}, 'body');
export const query = <S extends z.ZodType>(s: S, req: Request) => parse(s, { ...req.query }, 'query');
export const params = <S extends z.ZodType>(s: S, req: Request) => parse(s, { ...req.params }, 'params');
