import { decimal } from '../domain/decimal';
import { versionAt, type RateCardVersion, type RateRule } from '../domain/rating';
import { getRules, listVersionHeaders, type StoredRule } from '../db/rate-cards';
import type { Queryable } from '../db/queryable';

export const DEFAULT_CARD = 'default';

export const toRateRule = (r: StoredRule): RateRule => ({
  meter: r.meter,
  dimensions: r.dimensions,
  credits: decimal(r.credits),
  per: decimal(r.per),
});

/**
 * Resolves the card version in force for (card, timestamp). Published versions are immutable,
 * so their parsed rules are cached forever; the list of versions is re-read per batch (one
 * indexed query) so a newly published version applies at once.
 */
export class RateCardResolver {
  private readonly rulesCache = new Map<string, RateRule[]>();

  async forNames(
    q: Queryable,
    names: readonly string[],
  ): Promise<(card: string, at: Date) => Promise<RateCardVersion | null>> {
    const headers = await listVersionHeaders(q, [...new Set(names)]);
    const byName = new Map<string, { version: number; effectiveFrom: Date }[]>();
    for (const h of headers) byName.set(h.name, [...(byName.get(h.name) ?? []), h]);
    return async (card, at) => {
      const v = versionAt(byName.get(card) ?? [], at);
      if (!v) return null;
      return {
        name: card,
        version: v.version,
        effectiveFrom: v.effectiveFrom,
        rules: await this.rules(q, card, v.version),
      };
    };
  }

  private async rules(q: Queryable, name: string, version: number): Promise<RateRule[]> {
    const key = `${name}@${version}`;
    let rules = this.rulesCache.get(key);
    if (!rules) {
      rules = ((await getRules(q, name, version)) ?? []).map(toRateRule);
      if (this.rulesCache.size > 1000) this.rulesCache.clear();
      this.rulesCache.set(key, rules);
    }
    return rules;
  }
}
