import { Webhook } from 'standardwebhooks';
import { backoffMs, signingSecrets } from '../../webhooks/engine';
import { newSecret, signedHeaders } from '../../webhooks/notification';
import { addressRefusal, parseWebhookUrl, urlPolicy, UrlRefused } from '../../webhooks/url-policy';

const production = urlPolicy({ CREDITFLOW_MODE: 'production', WEBHOOK_ALLOWED_HOSTS: '' });
const development = urlPolicy({ CREDITFLOW_MODE: 'development', WEBHOOK_ALLOWED_HOSTS: '' });

describe('webhook URL syntax', () => {
  it.each([
    ['ftp:', 'ftp://example.com/x', 'must be http or https'],
    ['file:', 'file:///etc/passwd', 'must be http or https'],
    ['no host', 'http://', 'not a valid absolute URL'],
    ['relative', '/relative', 'not a valid absolute URL'],
    ['user and password', 'https://user:pw@example.com/', 'must not contain credentials'],
    ['user', 'https://user@example.com/', 'must not contain credentials'],
    ['2049 characters', `https://example.com/${'a'.repeat(2029)}`, 'longer than 2048 characters'],
  ])('%s is refused', (_label, url, why) => {
    expect(() => parseWebhookUrl(url)).toThrow(new UrlRefused(why));
  });

  it('accepts http and https with ports, paths and queries, up to 2048 characters', () => {
    expect(parseWebhookUrl('https://hooks.example.com:8443/a/b?c=d').hostname).toBe('hooks.example.com');
    const long = `https://example.com/${'a'.repeat(2048 - 'https://example.com/'.length)}`;
    expect(long).toHaveLength(2048);
    expect(parseWebhookUrl(long).href).toBe(long);
  });
});

describe('webhook address policy', () => {
  it.each([
    '127.0.0.1',
    '127.9.9.9',
    '10.0.0.1',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    'fd12:3456::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:10.1.2.3',
  ])('production refuses %s', (ip) => {
    expect(addressRefusal(production, 'h', ip)).toMatch(/not in WEBHOOK_ALLOWED_HOSTS/);
  });

  it.each(['8.8.8.8', '172.32.0.1', '192.169.0.1', '2606:4700::1111', '::ffff:8.8.8.8'])('allows public %s', (ip) => {
    expect(addressRefusal(production, 'h', ip)).toBeNull();
  });

  it('development allows loopback only', () => {
    expect(addressRefusal(development, 'localhost', '127.0.0.1')).toBeNull();
    expect(addressRefusal(development, 'localhost', '::1')).toBeNull();
    expect(addressRefusal(development, 'h', '192.168.1.1')).not.toBeNull();
    expect(addressRefusal(development, 'h', '169.254.169.254')).not.toBeNull();
  });

  it('the allowlist names hosts or addresses (case-insensitive, IPv6 with or without brackets)', () => {
    const p = urlPolicy({ CREDITFLOW_MODE: 'production', WEBHOOK_ALLOWED_HOSTS: ' Internal.Example ,127.0.0.1,[::1]' });
    expect(addressRefusal(p, 'internal.example', '10.0.0.5')).toBeNull();
    expect(addressRefusal(p, 'localhost', '127.0.0.1')).toBeNull();
    expect(addressRefusal(p, '::1', '::1')).toBeNull();
    expect(addressRefusal(p, 'other.example', '10.0.0.5')).not.toBeNull();
    expect(addressRefusal(p, '127.0.0.2', '127.0.0.2')).not.toBeNull();
  });
});

describe('webhook signing and backoff', () => {
  it('secrets are whsec_ + 32 random bytes', () => {
    const s = newSecret();
    expect(s).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(s.slice(6), 'base64')).toHaveLength(32);
    expect(newSecret()).not.toBe(s);
  });

  it('two secrets sign twice; each verifies alone, a third does not', () => {
    const [a, b, c] = [newSecret(), newSecret(), newSecret()];
    const body = '{"id":"evt_1"}';
    const headers = signedHeaders('evt_1', body, [a, b]);
    expect(headers['webhook-signature']!.split(' ')).toHaveLength(2);
    expect(new Webhook(a).verify(body, headers)).toEqual({ id: 'evt_1' });
    expect(new Webhook(b).verify(body, headers)).toEqual({ id: 'evt_1' });
    expect(() => new Webhook(c).verify(body, headers)).toThrow('No matching signature found');
  });

  it('the previous secret signs only until its overlap ends', () => {
    const ep = {
      id: 'we_0',
      url: 'http://x',
      types: [],
      description: null,
      createdAt: new Date(),
      deletedAt: null,
      secret: 'new',
      previousSecret: 'old',
      previousSecretUntil: new Date('2030-01-01T00:00:00Z'),
    };
    expect(signingSecrets(ep, new Date('2029-12-31T23:59:59Z'))).toEqual(['new', 'old']);
    expect(signingSecrets(ep, new Date('2030-01-01T00:00:00Z'))).toEqual(['new']);
    expect(signingSecrets({ ...ep, previousSecret: null, previousSecretUntil: null })).toEqual(['new']);
  });

  it('backoff doubles from 1 s with ±20 % jitter, capped at 1 h; 24 h of it is ~35 attempts', () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 4, 5].map((n) => backoffMs(n, mid))).toEqual([1000, 2000, 4000, 8000, 16000]);
    expect(backoffMs(13, mid)).toBe(3_600_000);
    expect(backoffMs(500, mid)).toBe(3_600_000);
    expect(backoffMs(1, () => 0)).toBe(800);
    expect(backoffMs(1, () => 0.999999)).toBe(1200);
    let t = 0;
    let n = 0;
    while (t < 24 * 3_600_000) t += backoffMs(++n, () => 1);
    expect(n).toBeGreaterThanOrEqual(30);
    expect(n).toBeLessThanOrEqual(40);
  });
});
