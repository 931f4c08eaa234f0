import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Portal tokens: short-lived, read-only credentials for one customer, for a browser page.
 * Signed, not stored: `cfpt_<payload>.<mac>`, payload = base64url("<expiry, unix s>:<customer id>"),
 * mac = base64url(HMAC-SHA256(secret, "portal.v1." + payload)). Verifying needs no database
 * (every API process with the same secret accepts it) and a token ends at its expiry — nothing to
 * revoke or clean up. Changing PORTAL_TOKEN_SECRET invalidates every outstanding token at once.
 */
export const PORTAL_TOKEN_PREFIX = 'cfpt_';
export const PORTAL_TTL_DEFAULT_SECONDS = 3600;
export const PORTAL_TTL_MAX_SECONDS = 86_400;
const PAYLOAD = /^([0-9]{1,12}):([A-Za-z0-9_.:-]{1,128})$/;

export type Verified = { ok: true; customerId: string; expiresAt: Date } | { ok: false; reason: 'invalid' | 'expired' };

export class PortalTokens {
  private readonly secret: Buffer;

  /** `secret` ≥ 32 characters; without one, a random secret (tokens die with the process). */
  constructor(secret?: string) {
    if (secret !== undefined && secret.length < 32) throw new Error('a portal token secret has at least 32 characters');
    this.secret = secret ? Buffer.from(secret, 'utf8') : randomBytes(32);
  }

  issue(customerId: string, ttlSeconds: number, now: Date): { token: string; expiresAt: Date } {
    const exp = Math.floor(now.getTime() / 1000) + ttlSeconds;
    const payload = Buffer.from(`${exp}:${customerId}`, 'utf8').toString('base64url');
    return { token: `${PORTAL_TOKEN_PREFIX}${payload}.${this.mac(payload)}`, expiresAt: new Date(exp * 1000) };
  }

  verify(token: string, now: Date): Verified {
    if (!token.startsWith(PORTAL_TOKEN_PREFIX)) return { ok: false, reason: 'invalid' };
    const [payload, mac, extra] = token.slice(PORTAL_TOKEN_PREFIX.length).split('.');
    if (!payload || !mac || extra !== undefined) return { ok: false, reason: 'invalid' };
    const want = Buffer.from(this.mac(payload));
    const got = Buffer.from(mac);
    if (got.length !== want.length || !timingSafeEqual(got, want)) return { ok: false, reason: 'invalid' };
    const m = PAYLOAD.exec(Buffer.from(payload, 'base64url').toString('utf8'));
    if (!m) return { ok: false, reason: 'invalid' };
    const expiresAt = new Date(Number(m[1]) * 1000);
    if (expiresAt <= now) return { ok: false, reason: 'expired' };
    return { ok: true, customerId: m[2]!, expiresAt };
  }

  private mac(payload: string): string {
    return createHmac('sha256', this.secret).update(`portal.v1.${payload}`).digest('base64url');
  }
}
