import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';
import type { Logger } from './logger';

/**
 * One Temporal client per process (never per request). Connects lazily and keeps retrying,
 * so the API starts and reports /readyz 503 while Temporal is away instead of crashing.
 */
export class TemporalHandle {
  private connection: Connection | null = null;
  private connecting: Promise<Connection> | null = null;

  constructor(
    private readonly address: string,
    private readonly namespace: string,
    private readonly log: Logger,
  ) {}

  private async connect(): Promise<Connection> {
    if (this.connection) return this.connection;
    this.connecting ??= Connection.connect({
      address: this.address,
      connectTimeout: 2000,
      // A few quick retries, not the SDK's ~20 s of backoff: with Temporal away, callers get
      // DependencyUnavailable (503) in about a second instead of at the end of their bound.
      interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions({ maxAttempts: 4 }))],
    })
      .then((c) => {
        this.connection = c;
        this.log.info({ address: this.address }, 'connected to Temporal');
        return c;
      })
      .finally(() => {
        this.connecting = null;
      });
    return this.connecting;
  }

  async client(): Promise<Client> {
    return new Client({ connection: await this.connect(), namespace: this.namespace });
  }

  async ready(): Promise<void> {
    const c = await this.connect();
    await c.workflowService.getSystemInfo({});
  }

  async close(): Promise<void> {
    await this.connection?.close();
  }
}
