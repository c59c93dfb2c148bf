/** MQTT topic filter matching for ACL rules, on pre-split levels. */

export interface CompiledFilter {
  /** The filter text, after %c/%u substitution. */
  readonly filter: string
  readonly levels: readonly string[]
  /** A filter that does not start with `$` never matches a `$` topic (mosquitto: `topic #` does not grant `$SYS`). */
  readonly dollar: boolean
}

export function compileFilter (filter: string): CompiledFilter {
  return { filter, levels: filter.split('/'), dollar: filter.startsWith('$') }
}

/** True when topic (levels already split) matches the filter [MQTT-4.7.1]; `a/#` also matches `a`. */
export function filterMatches (f: CompiledFilter, topic: string, levels: readonly string[]): boolean {
  if (!f.dollar && topic.charCodeAt(0) === 36 /* $ */) return false
  const fl = f.levels
  for (let i = 0; i < fl.length; i++) {
    const l = fl[i]!
    if (l === '#') return true
    if (i >= levels.length) return false
    if (l !== '+' && l !== levels[i]) return false
  }
  return fl.length === levels.length
}

/**
 * True when every topic that `sub` can match is also matched by `rule`: the subscription falls entirely under
 * the rule. `rule a/#` covers `a/b/+`; `rule a/+` does not cover `a/#`.
 */
export function filterCovers (rule: CompiledFilter, sub: string): boolean {
  const s = sub.split('/')
  if (!rule.dollar && sub.startsWith('$')) return false
  const r = rule.levels
  for (let i = 0; i < r.length; i++) {
    const rl = r[i]!
    if (rl === '#') return true
    const sl = s[i]
    if (sl === undefined) return false // sub is shorter: it matches a topic the rule does not
    if (sl === '#') return false // sub reaches deeper (and shallower) than a non-# rule level
    if (rl === '+') continue
    if (sl !== rl) return false // sub '+' is wider than a literal, or a different literal
  }
  return s.length === r.length
}

/** True when some topic matches both filters. */
export function filtersOverlap (a: CompiledFilter, b: CompiledFilter): boolean {
  // a filter not starting with `$` never matches a `$` topic, and one starting with `$` matches only those
  if (a.dollar !== b.dollar) return false
  const n = Math.max(a.levels.length, b.levels.length)
  for (let i = 0; i < n; i++) {
    const x = a.levels[i]; const y = b.levels[i]
    if (x === '#' || y === '#') return true
    if (x === undefined || y === undefined) return false
    if (x !== '+' && y !== '+' && x !== y) return false
  }
  return true
}

/** The longest topic or filter MQTT can encode (a two-byte length). */
const MAX_TOPIC_LENGTH = 65_535

/** A valid subscription filter: `#` only last and alone in its level, `+` alone in its level. */
export function validFilter (filter: string): boolean {
  if (filter === '' || filter.length > MAX_TOPIC_LENGTH) return false
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return false
    if (l.includes('+') && l !== '+') return false
  }
  return true
}
