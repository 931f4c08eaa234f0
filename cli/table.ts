/** A cell: strings as they are, other scalars printed, objects and arrays as compact JSON. */
function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  // Scalars (numbers, booleans, bigints) as JSON would show them; bigints as digits.
  const s =
    typeof v === 'string'
      ? v
      : (JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) ?? '');
  // One line per row: control characters (newlines in a reason, say) are shown escaped.
  return s.replace(/\p{Cc}/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function grid(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

/**
 * A readable table for people (`--format table`): a list of objects → one row each, columns the
 * union of their keys; an object → `field  value` rows, and each list of objects it holds (a
 * wallet's lots, a page's transactions) as its own table below.
 */
export function table(value: unknown): string[] {
  if (Array.isArray(value)) {
    const objects = value.filter((v): v is Record<string, unknown> => !!v && typeof v === 'object');
    if (objects.length !== value.length || value.length === 0) return value.map(cell);
    const header = [...new Set(objects.flatMap((o) => Object.keys(o)))];
    return grid(
      header,
      objects.map((o) => header.map((h) => cell(o[h]))),
    );
  }
  if (!value || typeof value !== 'object') return [cell(value)];
  const entries = Object.entries(value as Record<string, unknown>);
  const lists = entries.filter(
    ([, v]) => Array.isArray(v) && v.length > 0 && v.every((x) => x && typeof x === 'object'),
  );
  const fields = entries.filter((e) => !lists.includes(e));
  const out = grid(
    ['field', 'value'],
    fields.map(([k, v]) => [k, cell(v)]),
  );
  for (const [k, v] of lists) out.push('', `${k}:`, ...table(v));
  return out;
}
