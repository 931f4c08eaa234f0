/**
 * A dependency (Postgres, Temporal, or the workers behind Temporal) did not answer in time.
 * The API answers 503 with Retry-After; nothing about the request's outcome is implied.
 */
export class DependencyUnavailable extends Error {
  constructor(
    readonly dependency: 'postgres' | 'temporal' | 'worker',
    message: string,
    readonly retryAfterSeconds = 5,
  ) {
    super(message);
    this.name = 'DependencyUnavailable';
  }
}
