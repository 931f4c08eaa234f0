// The customer portal page: live balance over SSE, lots and expiries, usage chart, ledger.
// Amounts are rendered as the API's strings; the chart scales bigint micro-credits.
import {
  availableChange,
  decodeToken,
  formatMicro,
  drawnFrom,
  lastDays,
  scale,
  shortId,
  usageByDay,
  type LedgerEntry,
  type UsageRow,
} from './format.js';

interface Lot {
  id: string;
  kind: string;
  remaining: string;
  held: string;
  expiresAt: string | null;
}
interface Balance {
  available: string;
  held: string;
  arrears: string;
  lots: Lot[];
  nextExpiry: { at: string; amount: string } | null;
}
interface Transaction {
  id: string;
  type: string;
  createdAt: string;
  entries: LedgerEntry[];
}

const EXPIRED = 'This portal link has expired. Ask for a new link to see your credits.';
const INVALID = 'This portal link is not valid. Ask for a new link to see your credits.';
const PAGE_SIZE = 10;
// Okabe–Ito: distinguishable with colour-vision deficiencies.
const COLOURS = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#999999'];
const LABELS: Record<string, string> = {
  usage: 'Usage',
  grant: 'Credits added',
  expiry: 'Expired',
  void: 'Voided',
  renewal: 'Allowance renewed',
  arrears_payment: 'Arrears paid',
  hold_place: 'Reserved for a job',
  hold_extend: 'Reservation extended',
  hold_capture: 'Job charged',
  hold_settle: 'Job settled',
  hold_release: 'Reservation released',
  refund_clawback: 'Refunded',
  refund_compensation: 'Refund reversed',
  correction: 'Usage corrected',
};

const el = (id: string) => document.getElementById(id)!;
const token = new URLSearchParams(location.search).get('token') ?? '';
const when = (iso: string) => `${iso.slice(0, 10)} ${iso.slice(11, 16)}`;

class ApiError extends Error {
  constructor(
    readonly status: number,
    detail: string,
  ) {
    super(detail);
  }
}

function fail(message: string): void {
  const s = el('status');
  s.textContent = message;
  s.className = 'error';
  s.setAttribute('role', 'alert');
  el('live').hidden = true;
}

function failWith(err: unknown): void {
  if (err instanceof ApiError && err.status === 401) fail(/expired/.test(err.message) ? EXPIRED : INVALID);
  else if (err instanceof ApiError && err.status === 403) fail('This link is for another account.');
  else fail('Your credits cannot be shown right now. Please try again in a minute.');
}

async function api<T>(path: string): Promise<T> {
  const res = await fetch(path, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) {
    const p = (await res.json().catch(() => ({}))) as { detail?: string };
    throw new ApiError(res.status, p.detail ?? res.statusText);
  }
  return (await res.json()) as T;
}

function cell(row: HTMLTableRowElement, text: string, cls?: string): HTMLTableCellElement {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function renderBalance(b: Balance): void {
  el('available').textContent = b.available;
  el('held').textContent = b.held;
  el('arrears').textContent = b.arrears;
  const next = el('next-expiry');
  next.hidden = !b.nextExpiry;
  if (b.nextExpiry) next.textContent = `Next expiry: ${b.nextExpiry.amount} credits on ${when(b.nextExpiry.at)} UTC`;
  const body = el('lots') as HTMLTableSectionElement;
  body.replaceChildren();
  for (const lot of b.lots) {
    const row = body.insertRow();
    const soonest = b.nextExpiry !== null && lot.expiresAt === b.nextExpiry.at && lot.remaining !== '0';
    if (soonest) row.className = 'soonest';
    cell(row, lot.kind);
    cell(row, lot.remaining, 'num');
    cell(row, lot.held, 'num');
    const exp = cell(row, lot.expiresAt ? `${when(lot.expiresAt)} UTC` : 'never');
    if (soonest) {
      const tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = ' — next to expire';
      exp.append(tag);
    }
  }
  if (b.lots.length === 0) cell(body.insertRow(), 'No credits yet.').colSpan = 4;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

let shownUsage: UsageRow[] = [];
function renderUsage(rows: UsageRow[]): void {
  shownUsage = rows;
  const days = lastDays(new Date(), 30);
  const u = usageByDay(rows, days);
  // Drawn at the container's own width, so its text stays at its real size on a phone and a desktop.
  const W = Math.max(280, Math.min(el('chart').clientWidth || 600, 960));
  const H = 180;
  const top = 20;
  const base = H - 24;
  const slot = W / days.length;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title' });
  const title = svg('title', { id: 'chart-title' });
  title.textContent = u.meters.length
    ? `Credits used per day over the last 30 days, by meter (${u.meters.join(', ')})`
    : 'No usage in the last 30 days';
  chart.append(title, svg('line', { x1: 0, x2: W, y1: base, y2: base, stroke: '#4a4a4a' }));
  days.forEach((day, i) => {
    let y = base;
    u.meters.forEach((meter, m) => {
      const h = scale(u.at(day, meter), u.max, base - top);
      if (h === 0) return;
      y -= h;
      const bar = svg('rect', { x: i * slot + 2, y, width: slot - 4, height: h, fill: COLOURS[m % COLOURS.length]! });
      const tip = svg('title', {});
      tip.textContent = `${day} ${meter}`;
      bar.append(tip);
      chart.append(bar);
    });
    const last = i === days.length - 1;
    if ((i % 7 === 0 && i < days.length - 4) || last) {
      const anchor = i === 0 ? 'start' : last ? 'end' : 'middle';
      const x = i === 0 ? 0 : last ? W : i * slot + slot / 2;
      const label = svg('text', { x, y: H - 6, 'font-size': 12, 'text-anchor': anchor, fill: '#1a1a1a' });
      label.textContent = day.slice(5);
      chart.append(label);
    }
  });
  const peak = svg('text', { x: 0, y: 12, 'font-size': 12, fill: '#1a1a1a' });
  peak.textContent = u.meters.length ? `highest day: ${formatMicro(u.max)} credits` : 'no usage yet';
  chart.append(peak);
  el('chart').replaceChildren(chart);
  el('legend').replaceChildren(
    ...u.meters.map((meter, m) => {
      const li = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.style.background = COLOURS[m % COLOURS.length]!;
      li.append(swatch, meter);
      return li;
    }),
  );
  const table = el('usage-rows') as HTMLTableSectionElement;
  table.replaceChildren();
  for (const r of rows) {
    const row = table.insertRow();
    cell(row, r.day ?? '');
    cell(row, r.meter ?? '');
    cell(row, r.credits, 'num');
  }
}

/** The ledger, newest first; `cursors[i]` opens page i (undefined: the first). */
const ledger = { cursors: [undefined] as (string | undefined)[], page: 0, next: null as string | null };

async function loadLedger(customerId: string): Promise<void> {
  const cursor = ledger.cursors[ledger.page];
  const q = `limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
  const r = await api<{ transactions: Transaction[]; nextCursor: string | null }>(
    `/v1/customers/${encodeURIComponent(customerId)}/ledger?${q}`,
  );
  ledger.next = r.nextCursor;
  const body = el('ledger') as HTMLTableSectionElement;
  body.replaceChildren();
  for (const t of r.transactions) {
    const row = body.insertRow();
    row.dataset.type = t.type;
    cell(row, when(t.createdAt), 'when');
    cell(row, LABELS[t.type] ?? t.type);
    cell(row, availableChange(t.entries), 'num');
    const paid = cell(row, '');
    const drawn = t.type === 'usage' || t.type.startsWith('hold') ? drawnFrom(t.entries) : [];
    if (drawn.length) {
      const list = document.createElement('ul');
      list.className = 'paid';
      for (const d of drawn) {
        const li = document.createElement('li');
        const code = document.createElement('code');
        code.textContent = shortId(d.lotId);
        code.title = d.lotId;
        li.append(`${d.amount} from ${d.kind} `, code);
        list.append(li);
      }
      paid.append(list);
    }
  }
  if (r.transactions.length === 0) cell(body.insertRow(), 'Nothing yet.').colSpan = 4;
  el('page').textContent = `Page ${ledger.page + 1}`;
  (el('newer') as HTMLButtonElement).disabled = ledger.page === 0;
  (el('older') as HTMLButtonElement).disabled = !ledger.next;
}

function connect(customerId: string): void {
  const url = `/v1/customers/${encodeURIComponent(customerId)}/balance/stream?token=${encodeURIComponent(token)}`;
  const es = new EventSource(url);
  es.addEventListener('balance', (e) => {
    renderBalance(JSON.parse((e as MessageEvent<string>).data) as Balance);
    el('live').hidden = false;
    el('status').textContent = 'Up to date: changes appear here as they happen.';
    refreshSoon(customerId);
  });
  es.onerror = () => {
    el('live').hidden = true;
    if (es.readyState !== EventSource.CLOSED) {
      el('status').textContent = 'Reconnecting…';
      return;
    }
    // Refused (expired link, too many streams): ask the API why, and try again later if it may pass.
    api<Balance>(`/v1/customers/${encodeURIComponent(customerId)}/balance`).then((b) => {
      renderBalance(b);
      el('status').textContent = 'Reconnecting…';
      setTimeout(() => connect(customerId), 5000);
    }, failWith);
  };
}

let refreshing: ReturnType<typeof setTimeout> | null = null;
/** After balance changes: the usage chart and the ledger's first page, at most every 2 s. */
function refreshSoon(customerId: string): void {
  if (refreshing) return;
  refreshing = setTimeout(() => {
    refreshing = null;
    const jobs: Promise<void>[] = [loadUsage(customerId)];
    if (ledger.page === 0) jobs.push(loadLedger(customerId));
    Promise.all(jobs).catch(failWith);
  }, 2000);
}

async function loadUsage(customerId: string): Promise<void> {
  const r = await api<{ rows: UsageRow[] }>(`/v1/customers/${encodeURIComponent(customerId)}/usage?groupBy=meter,day`);
  renderUsage(r.rows);
}

function main(): void {
  const info = decodeToken(token);
  if (!info) return fail(INVALID);
  el('customer').textContent = info.customerId;
  if (info.expiresAt <= new Date()) return fail(EXPIRED);
  const id = info.customerId;
  el('older').addEventListener('click', () => {
    if (!ledger.next) return;
    ledger.cursors[++ledger.page] = ledger.next;
    loadLedger(id).catch(failWith);
  });
  el('newer').addEventListener('click', () => {
    if (ledger.page === 0) return;
    ledger.page--;
    loadLedger(id).catch(failWith);
  });
  window.addEventListener('resize', () => renderUsage(shownUsage));
  Promise.all([loadLedger(id), loadUsage(id)]).then(() => connect(id), failWith);
}

main();
