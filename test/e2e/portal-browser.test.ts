import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { BalanceStreams } from '../../api/balance-streams';
import { PortalTokens } from '../../api/portal-tokens';
import type { Pool } from '../../db/pool';
import { call, makeKey, startApi, putTokensRateCard, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { TEST_DATA } from '../support/paths';

/**
 * The customer portal in a real headless Chromium (Debian's `chromium`, driven by playwright-core;
 * scripts/tools.sh ensure_chromium installs it): the live balance changes without a reload, lots
 * and the next expiry, the usage chart, ledger paging with the lots each usage drew from, phone
 * width, exact amounts, and an expired link. Screenshots go to .data/test/portal-*.png.
 */
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const SECRET = 'browser-test-secret-0123456789abcdef';
const DAY = 86_400_000;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let streams: BalanceStreams;
let browser: Browser;
const keys = { admin: '', service: '' };
let customer: string;
let expiry: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `${CHROMIUM} is missing: run npm test (scripts/tools.sh ensure_chromium installs Debian's chromium)`,
    );
  mkdirSync(TEST_DATA, { recursive: true });
  db = await freshDatabase();
  pool = db.pool;
  streams = new BalanceStreams(pool, { maxStreams: 100, heartbeatMs: 15_000 });
  api = await startApi(pool, { balanceStreams: streams, portalTokens: new PortalTokens(SECRET) });
  keys.admin = await makeKey(pool, 'admin');
  keys.service = await makeKey(pool, 'service');
  await putTokensRateCard(api.url, keys.admin);
  customer = `web-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: keys.admin, json: { id: customer } })).status).toBe(201);
  expiry = new Date(Math.ceil((Date.now() + 5 * DAY) / 60_000) * 60_000).toISOString();
  await grant('100', 'promotional', expiry);
  await grant('1000', 'purchased');
  // 15 usage transactions (and 2 grants): two ledger pages of 10.
  for (let i = 0; i < 15; i++) await use(2);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  streams?.close();
  await api?.close();
  await db?.drop();
});

async function grant(amount: string, kind: string, expiresAt?: string) {
  const r = await call(api.url, 'POST', `/v1/customers/${customer}/grants`, {
    key: keys.admin,
    json: { amount, kind, ...(expiresAt ? { expiresAt } : {}) },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(r.status).toBe(201);
}
async function use(thousands: number) {
  const e = { id: randomUUID(), customerId: customer, meter: 'tokens', quantity: String(thousands * 1000) };
  const r = await call(api.url, 'POST', '/v1/events', { key: keys.service, json: { events: [e] } });
  expect(r.body.results[0].status).toBe('accepted');
}
async function portalUrl(): Promise<string> {
  const r = await call(api.url, 'POST', `/v1/customers/${customer}/portal-tokens`, { key: keys.admin, json: {} });
  expect(r.status).toBe(201);
  return r.body.url;
}
async function page(width: number, height: number): Promise<Page> {
  const ctx = await browser.newContext({ viewport: { width, height } });
  return ctx.newPage();
}
const text = (p: Page, sel: string) => p.locator(sel).innerText();

it('shows the live balance, lots with the next expiry, the usage chart and the paged ledger; usage appears within 2 s', async () => {
  const p = await page(1280, 900);
  await p.goto(await portalUrl());
  // 1,100 granted, 15 × 2 used; promotional credits (expiring) are drawn first.
  await p.locator('#available', { hasText: /^1070$/ }).waitFor({ timeout: 10_000 });
  expect(await text(p, '#held')).toBe('0');
  expect(await text(p, '#arrears')).toBe('0');
  expect(await text(p, '#live')).toBe('live');
  const when = `${expiry.slice(0, 10)} ${expiry.slice(11, 16)}`;
  expect(await text(p, '#next-expiry')).toBe(`Next expiry: 70 credits on ${when} UTC`);
  const soonest = p.locator('#lots tr.soonest');
  expect(await soonest.count()).toBe(1);
  expect(await soonest.innerText()).toContain('promotional');
  expect(await soonest.innerText()).toContain('next to expire');
  expect(await p.locator('#chart svg rect').count()).toBeGreaterThan(0);
  expect(await text(p, '#legend')).toContain('tokens');

  // Ledger: newest first, 10 a page; each usage line names the lot it drew from.
  expect(await p.locator('#ledger tr').count()).toBe(10);
  const usageRow = p.locator('#ledger tr[data-type="usage"]').first();
  expect(await usageRow.innerText()).toMatch(/-2\s+2 from promotional [0-9a-f]{8}/);
  await p.focus('#older'); // keyboard, not only the mouse
  await p.keyboard.press('Enter');
  await p.locator('#page', { hasText: 'Page 2' }).waitFor();
  expect(await p.locator('#ledger tr').count()).toBe(7);
  expect(await p.locator('#ledger tr[data-type="grant"]').count()).toBe(2);
  expect(await p.locator('#older').isDisabled()).toBe(true);
  await p.click('#newer');
  await p.locator('#page', { hasText: 'Page 1' }).waitFor();

  // Live: usage sent through the API shows up without a reload.
  await p.evaluate('window.marker = 42'); // (a string: tests compile without the DOM lib)
  const sent = Date.now();
  await use(5);
  await p.locator('#available', { hasText: /^1065$/ }).waitFor({ timeout: 2000 });
  const took = Date.now() - sent;
  expect(took).toBeLessThan(2000);
  expect(await p.evaluate('window.marker')).toBe(42); // the same document: no reload
  await p.locator('#ledger tr', { hasText: '-5' }).first().waitFor({ timeout: 5000 }); // page 1 refreshes too
  await p.screenshot({ path: path.join(TEST_DATA, 'portal-desktop.png'), fullPage: true });
  await p.context().close();
}, 60_000);

it('is readable at phone width: nothing wider than the screen', async () => {
  const p = await page(390, 844);
  await p.goto(await portalUrl());
  await p.locator('#available', { hasText: /^\d+$/ }).waitFor({ timeout: 10_000 });
  await p.locator('#chart svg').waitFor();
  expect(await p.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
  await p.screenshot({ path: path.join(TEST_DATA, 'portal-phone.png'), fullPage: true });
  await p.context().close();
}, 60_000);

it('shows amounts exactly as the API gives them, never through a float', async () => {
  const p = await page(1280, 900);
  const huge = { available: '9007199254740993.000001', held: '0.000001', arrears: '123456789012345678.123456' };
  await p.route('**/balance/stream**', (route) =>
    route.fulfill({
      status: 200,
      headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
      body: `retry: 60000\n\nid: 1\nevent: balance\ndata: ${JSON.stringify({
        customerId: customer,
        ...huge,
        lots: [],
        nextExpiry: { at: expiry, amount: '9007199254740993.000001' },
      })}\n\n`,
    }),
  );
  await p.goto(await portalUrl());
  await p.locator('#held', { hasText: '0.000001' }).waitFor({ timeout: 10_000 });
  expect(await text(p, '#available')).toBe(huge.available); // Number() would give 9007199254740992
  expect(await text(p, '#arrears')).toBe(huge.arrears);
  expect(await text(p, '#next-expiry')).toContain('9007199254740993.000001 credits');
  await p.context().close();
}, 60_000);

it('an expired link says so clearly', async () => {
  const p = await page(1280, 900);
  const old = new PortalTokens(SECRET).issue(customer, 60, new Date(Date.now() - DAY)).token;
  await p.goto(`${api.url}/portal?token=${old}`);
  const status = p.locator('#status');
  await status.filter({ hasText: 'expired' }).waitFor({ timeout: 10_000 });
  expect(await status.innerText()).toBe('This portal link has expired. Ask for a new link to see your credits.');
  expect(await status.getAttribute('role')).toBe('alert');
  expect(await text(p, '#available')).toBe('–'); // nothing shown
  await p.context().close();
}, 60_000);

it('a link whose token the server refuses (tampered) says it is not valid', async () => {
  const p = await page(1280, 900);
  const url = await portalUrl();
  await p.goto(`${url.slice(0, -2)}AA`);
  await p.locator('#status', { hasText: 'not valid' }).waitFor({ timeout: 10_000 });
  await p.context().close();
}, 60_000);
