/**
 * MQTT topic filter matching without allocation: walks filter and topic once. Used on the delivery hot path.
 * `+` matches one level, `#` (last) matches the parent and any number of levels [MQTT-4.7.1-2].
 * Leading wildcards do not match topics starting with `$` [MQTT-4.7.2-1].
 */
export function topicMatches (filter: string, topic: string): boolean {
  const fl = filter.length
  const tl = topic.length
  if (tl > 0 && topic.charCodeAt(0) === 36 /* $ */) {
    const f0 = filter.charCodeAt(0)
    if (f0 === 43 /* + */ || f0 === 35 /* # */) return false
  }
  let fi = 0
  let ti = 0
  while (fi < fl) {
    const fc = filter.charCodeAt(fi)
    if (fc === 35 /* # */) return true
    if (fc === 43 /* + */) {
      while (ti < tl && topic.charCodeAt(ti) !== 47 /* / */) ti++
      fi++
    } else {
      if (ti >= tl) {
        // "a/#" matches "a": the filter's remaining "/#" matches the parent level
        return fi + 1 < fl && fc === 47 && filter.charCodeAt(fi + 1) === 35 && fi + 2 === fl
      }
      if (fc !== topic.charCodeAt(ti)) return false
      fi++
      ti++
    }
  }
  return ti === tl
}

/**
 * The highest QoS among `subscriptions` whose filter matches `topic`, stopping early once `cap` is reached
 * (the publish QoS: nothing above it matters); -1 if none matches. [MQTT-3.8.4-6] / [MQTT-3.3.5-1]
 */
export function maxMatchingQos (subscriptions: Record<string, { qos: number }>, topic: string, cap: number): number {
  let max = -1
  for (const filter in subscriptions) {
    const q = subscriptions[filter]!.qos
    if (q > max && topicMatches(filter, topic)) {
      max = q
      if (max >= cap) break
    }
  }
  return max
}

/**
 * The Subscription Identifiers of every subscription in `subscriptions` whose filter matches `topic`, each once, in
 * the order found: a message matching several of a client's subscriptions carries all of them [MQTT-3.3.4-3].
 */
export function matchingSubscriptionIds (subscriptions: Record<string, { si?: number }>, topic: string): number[] {
  const ids: number[] = []
  for (const filter in subscriptions) {
    const si = subscriptions[filter]!.si
    if (si !== undefined && !ids.includes(si) && topicMatches(filter, topic)) ids.push(si)
  }
  return ids
}
