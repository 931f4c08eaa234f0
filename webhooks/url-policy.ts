import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { loadConfig, type Config } from '../lib/config';

/**
 * Where webhooks may go. http(s) only, no credentials, ≤ 2048 characters; in production mode no
 * host that resolves to a loopback, link-local, private, unique-local or otherwise non-public
 * address unless WEBHOOK_ALLOWED_HOSTS names it (development mode allows loopback). Checked when an
 * endpoint is created and again on every connection (the delivery pins the address it checked,
 * so a DNS answer that changes in between cannot redirect a request).
 */
export interface UrlPolicy {
  production: boolean;
  /** Lower-case host names and IPs (IPv6 without brackets). */
  allowedHosts: ReadonlySet<string>;
}

export const MAX_URL_LENGTH = 2048;

export class UrlRefused extends Error {}

export function urlPolicy(c: Pick<Config, 'CREDITFLOW_MODE' | 'WEBHOOK_ALLOWED_HOSTS'>): UrlPolicy {
  const hosts = c.WEBHOOK_ALLOWED_HOSTS.split(',')
    .map((h) => bare(h.trim().toLowerCase()))
    .filter(Boolean);
  return { production: c.CREDITFLOW_MODE === 'production', allowedHosts: new Set(hosts) };
}

/** The process's policy (its environment, read on each call so a test can change it). */
export const policyFromEnv = (env: NodeJS.ProcessEnv = process.env) => urlPolicy(loadConfig(env));

const bare = (host: string) => (host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host);

/** Syntax only: throws UrlRefused with the reason. */
export function parseWebhookUrl(raw: string): URL {
  if (raw.length > MAX_URL_LENGTH) throw new UrlRefused(`longer than ${MAX_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UrlRefused('not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UrlRefused('must be http or https');
  if (!url.hostname) throw new UrlRefused('has no host');
  if (url.username || url.password) throw new UrlRefused('must not contain credentials');
  return url;
}

// Not public: this network, private, shared (CGNAT), loopback, link-local, IETF, benchmarking,
// multicast, reserved; IPv6 unspecified, loopback, unique-local, link-local, site-local, multicast,
// documentation. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are checked against the IPv4 list.
const NOT_PUBLIC = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  NOT_PUBLIC.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  ['::', 96], // unspecified, loopback, IPv4-compatible
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
  ['2001:db8::', 32],
] as const)
  NOT_PUBLIC.addSubnet(net, bits, 'ipv6');
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

const family = (ip: string) => (isIP(ip) === 6 ? 'ipv6' : 'ipv4');

/** Null when `ip` (reached through `host`) may be called; otherwise why not. */
export function addressRefusal(policy: UrlPolicy, host: string, ip: string): string | null {
  if (!policy.production && LOOPBACK.check(ip, family(ip))) return null;
  if (!NOT_PUBLIC.check(ip, family(ip))) return null;
  if (policy.allowedHosts.has(bare(host.toLowerCase())) || policy.allowedHosts.has(ip.toLowerCase())) return null;
  return `${host} resolves to ${ip}, a loopback, link-local or private address (not in WEBHOOK_ALLOWED_HOSTS)`;
}

const resolveAll = (host: string, timeoutMs: number) =>
  new Promise<LookupAddress[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new UrlRefused(`${host} did not resolve in time`)), timeoutMs);
    dnsLookup(host, { all: true, verbatim: true }, (err, addresses) => {
      clearTimeout(timer);
      if (err || addresses.length === 0) reject(new UrlRefused(`${host} does not resolve`));
      else resolve(addresses);
    });
  });

/** The addresses `url` would reach, each allowed by the policy; throws UrlRefused otherwise. */
export async function checkUrl(policy: UrlPolicy, url: URL, timeoutMs = 5000): Promise<string[]> {
  const host = bare(url.hostname);
  const addresses = isIP(host) ? [host] : (await resolveAll(host, timeoutMs)).map((a) => a.address);
  for (const ip of addresses) {
    const why = addressRefusal(policy, host, ip);
    if (why) throw new UrlRefused(why);
  }
  return addresses;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for http.request: resolves, refuses the connection if any answer is not allowed, and
 * hands the checked addresses to the socket (no second lookup an attacker's DNS could answer).
 */
export function pinnedLookup(policy: UrlPolicy) {
  return (hostname: string, options: { all?: boolean }, callback: LookupCallback): void => {
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) => {
      if (err) return callback(err, []);
      for (const a of addresses) {
        const why = addressRefusal(policy, hostname, a.address);
        if (why) return callback(Object.assign(new Error(why), { code: 'EADDRREFUSED' }), []);
      }
      if (options.all) return callback(null, addresses);
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error(`${hostname} does not resolve`), { code: 'ENOTFOUND' }), []);
      callback(null, first.address, first.family);
    });
  };
}
