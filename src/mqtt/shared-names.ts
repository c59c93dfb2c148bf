/**
 * The names of shared subscriptions (`$share/GROUP/FILTER`, MQTT 5 section 4.8.2): how a client writes one, the
 * name aedes holds it under (`$MIDGE/share/GROUP/FILTER`, where nothing can publish) and back. Pure string work,
 * here so that the routing (broker/shared-subscriptions.ts), the `$`-topic delivery rule (sys/forward.ts) and the
 * admin API read the same names without depending on the broker.
 */
import { SHARED_PREFIX } from './reserved-topics.js'

export const SHARE_PREFIX = '$share/'
/** What aedes holds for a shared subscription: under `$MIDGE`, which nothing can publish to. */
export const INTERNAL_PREFIX = SHARED_PREFIX
const SHARE_BARE = '$share'

/** A shared filter split into its parts; `invalid` names the rule it breaks. */
export type ParsedShare = { group: string, filter: string } | { invalid: 'malformed' | 'protocol' }

/** `$share/GROUP/FILTER` -> its parts; undefined for a filter that is not a shared one. */
export function parseShare (topic: string): ParsedShare | undefined {
  if (topic === SHARE_BARE) return { invalid: 'protocol' }
  if (!topic.startsWith(SHARE_PREFIX)) return undefined
  const slash = topic.indexOf('/', SHARE_PREFIX.length)
  const group = slash < 0 ? topic.slice(SHARE_PREFIX.length) : topic.slice(SHARE_PREFIX.length, slash)
  // [MQTT-4.8.2-2] no wildcard in the share name: mosquitto treats it as a malformed packet
  if (group.includes('+') || group.includes('#')) return { invalid: 'malformed' }
  // [MQTT-4.8.2-1] a share name of one character at least, then "/" and a topic filter
  if (slash < 0 || group.length === 0 || slash === topic.length - 1) return { invalid: 'protocol' }
  return { group, filter: topic.slice(slash + 1) }
}

/** The name aedes holds for `$share/GROUP/FILTER`. */
export function internalName (group: string, filter: string): string {
  return `${INTERNAL_PREFIX}${group}/${filter}`
}

/** The shared filter a name aedes holds stands for, or undefined for a normal filter. */
export function fromInternal (name: string): { group: string, filter: string } | undefined {
  if (!name.startsWith(INTERNAL_PREFIX)) return undefined
  const slash = name.indexOf('/', INTERNAL_PREFIX.length)
  if (slash < 0) return undefined
  return { group: name.slice(INTERNAL_PREFIX.length, slash), filter: name.slice(slash + 1) }
}

/** The topic filter a name aedes holds matches topics with: FILTER of a shared one, the name itself otherwise. */
export function matchingFilter (name: string): string {
  return fromInternal(name)?.filter ?? name
}

/** The filter as the client wrote it (`$share/g/f`) for a name aedes holds; other names unchanged. */
export function displayFilter (name: string): string {
  const s = fromInternal(name)
  return s === undefined ? name : `${SHARE_PREFIX}${s.group}/${s.filter}`
}
