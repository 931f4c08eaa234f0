import { loadConfig } from '../../lib/config';

describe('housekeeping configuration', () => {
  it('keeps stored replies 30 days by default and refuses a retention under 7 days at load', () => {
    expect(loadConfig({}).IDEMPOTENCY_RETENTION_DAYS).toBe(30);
    expect(loadConfig({ IDEMPOTENCY_RETENTION_DAYS: '7' }).IDEMPOTENCY_RETENTION_DAYS).toBe(7);
    for (const bad of ['6', '0', '-1', '7.5', 'thirty'])
      expect(() => loadConfig({ IDEMPOTENCY_RETENTION_DAYS: bad })).toThrow(/IDEMPOTENCY_RETENTION_DAYS/);
    expect(loadConfig({}).HOUSEKEEPING_CRON).toBe('30 3 * * *');
    expect(() => loadConfig({ HOUSEKEEPING_CRON: '* *' })).toThrow(/HOUSEKEEPING_CRON/);
  });
});
