/**
 * Keys and ids composed from parts. `%` and `:` inside a part are escaped, so two different lists
 * of parts never give the same key (`P` + `q:r` ≠ `P:q` + `r`). Parts without `%` or `:` are kept
 * as they are, so keys written before this existed stay the same. Pure: workflows may import it.
 */
export function composeKey(...parts: readonly string[]): string {
  return parts.map((p) => p.replace(/%/g, '%25').replace(/:/g, '%3A')).join(':');
}
