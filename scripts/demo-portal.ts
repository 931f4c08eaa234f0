// npm start, development mode: a demo customer with some credits and usage, and a portal link for
// it on stdout, so a newcomer sees the portal in one step. Safe to run again (same customer, keys).
import { DEV_ADMIN_KEY } from '../lib/config';

const base = `http://127.0.0.1:${process.env.PORT ?? '3000'}`;
const DAY = 86_400_000;

async function call(
  method: string,
  path: string,
  body: unknown,
  key?: string,
): Promise<{ status: number; json: { url?: string } }> {
  const res = await fetch(base + path, {
    method,
    headers: {
      authorization: `Bearer ${DEV_ADMIN_KEY}`,
      'content-type': 'application/json',
      ...(key ? { 'idempotency-key': key } : {}),
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, json: (await res.json()) as { url?: string } };
}

async function main(): Promise<void> {
  const created = await call('POST', '/v1/customers', { id: 'demo', name: 'Demo customer' });
  if (created.status === 201) {
    const soon = new Date(Date.now() + 12 * DAY).toISOString();
    await call(
      'POST',
      '/v1/customers/demo/grants',
      { amount: '500', kind: 'promotional', expiresAt: soon },
      'demo-promo',
    );
    await call('POST', '/v1/customers/demo/grants', { amount: '5000', kind: 'purchased' }, 'demo-purchase');
    const events = Array.from({ length: 24 }, (_, i) => ({
      id: `demo-${i}`,
      customerId: 'demo',
      meter: i % 3 === 0 ? 'images' : 'llm.input_tokens',
      quantity: i % 3 === 0 ? 1 + (i % 4) : 20_000 + i * 7_000,
      dimensions: i % 3 === 0 ? { size: '1024' } : { model: 'large' },
      timestamp: new Date(Date.now() - (i % 12) * DAY - 3_600_000).toISOString(),
    }));
    await call('POST', '/v1/events', { events });
  } else if (created.status !== 200) throw new Error(`creating the demo customer: ${created.status}`);
  const t = await call('POST', '/v1/customers/demo/portal-tokens', { ttlSeconds: 86_400 });
  if (t.status !== 201) throw new Error(`portal token: ${t.status}`);
  process.stdout.write(`${t.json.url}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo portal: ${String(err)}\n`);
  process.exit(1);
});
