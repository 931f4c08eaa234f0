import type { Pool } from '../db/pool';
import { gatewayName, type Config } from '../lib/config';
import type { PaymentGateway } from './gateway';
import { ManualGateway } from './manual';
import { SandboxGateway } from './sandbox';
import { StripeGateway } from './stripe';

/** The configured gateway (PAYMENT_GATEWAY): the API checks payment methods with it, the worker charges. */
export function createGateway(config: Config, pool: Pool): PaymentGateway {
  switch (gatewayName(config)) {
    case 'stripe':
      return new StripeGateway({
        secretKey: config.STRIPE_SECRET_KEY!,
        ...(config.STRIPE_API_BASE ? { apiBase: config.STRIPE_API_BASE } : {}),
        timeoutMs: config.GATEWAY_TIMEOUT_MS,
      });
    case 'manual':
      return new ManualGateway();
    case 'sandbox':
      return new SandboxGateway(pool);
  }
}
