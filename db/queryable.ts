import type pg from 'pg';

/** Anything that runs a query: the pool for reads, a transaction client for writes. */
export type Queryable = Pick<pg.Pool | pg.PoolClient, 'query'>;
