/**
 * One copy per client. aedes' own duplicate filter drops messages: it keeps, per client and per broker id, the
 * highest `brokerCounter` delivered and drops anything lower (lib/client.js `dedupe`). Counters are assigned when
 * `broker.publish` starts, but messages reach subscribers when their store writes end: a retained message (one
 * LevelDB write) overtaken by a plain one is then dropped for every subscriber matching both. Measured on bare aedes
 * 1.2.0 with aedes-persistence-level: 200 QoS 0 publishes alternating retained / not retained, a `#` subscriber gets
 * 100. Midge keeps aedes' purpose (one copy per client when several of its subscriptions match) with an exact
 * filter: the last `brokerId:counter` keys delivered to this client.
 */
import { interceptDuplicates, type ClientInternals, type DeliverPacket } from '../../aedes/internals.js'
import { maxMatchingQos } from '../../mqtt/topic-match.js'

/** How many delivered `brokerId:counter` keys a client remembers. */
export const SEEN_LIMIT = 1024

/** What the stored queue's window tells the filter: a stored message sent (a live copy of it is a duplicate). */
export interface SeenKeys { remember (id: string, counter: number): void }

/**
 * The exact duplicate filter of one client, as the target of the Proxy that replaces aedes' `client.duplicates`
 * (one shared handler, no closures per client). aedes calls `dedupe` synchronously inside deliverQoS/deliver0:
 * `(duplicates[id] || 0) < counter` decides, then `duplicates[id] = counter` records; the packet being delivered is
 * `current`. The last SEEN_LIMIT (brokerId, counter) pairs delivered are kept per broker id as numbers, evicted
 * oldest first from a ring: no string per lookup, no Set iterator (a Set's first entry is found by skipping its
 * deleted slots). Nothing is allocated until the first delivery: an idle connection holds none of it.
 */
export class SeenFilter implements SeenKeys {
  /** The packet aedes is delivering to this client right now (set around the call into aedes). */
  current: DeliverPacket | undefined
  private seen: Map<string, Set<number>> | undefined
  private ringIds: string[] | undefined
  private ringCounters: number[] | undefined
  private ringAt = 0

  has (id: string, counter: number): boolean {
    return this.seen?.get(id)?.has(counter) === true
  }

  remember (id: string, counter: number): void {
    const seen = this.seen ??= new Map()
    const ringIds = this.ringIds ??= []
    const ringCounters = this.ringCounters ??= []
    const grown = ringIds.length === SEEN_LIMIT
    if (grown) seen.get(ringIds[this.ringAt]!)?.delete(ringCounters[this.ringAt]!)
    let set = seen.get(id)
    if (set === undefined) {
      if (seen.size >= SEEN_LIMIT) for (const [k, v] of seen) if (v.size === 0) seen.delete(k)
      seen.set(id, set = new Set())
    }
    set.add(counter)
    if (!grown) {
      ringIds.push(id)
      ringCounters.push(counter)
      return
    }
    ringIds[this.ringAt] = id
    ringCounters[this.ringAt] = counter
    this.ringAt = this.ringAt + 1 === SEEN_LIMIT ? 0 : this.ringAt + 1
  }
}

const DUPLICATES: ProxyHandler<SeenFilter> = {
  get (f, id) {
    const c = f.current
    if (c === undefined || typeof id !== 'string') return 0
    return f.has(id, c.brokerCounter ?? 0) ? Number.POSITIVE_INFINITY : 0
  },
  set (f, id) {
    const c = f.current
    if (c !== undefined && typeof id === 'string') f.remember(id, c.brokerCounter ?? 0)
    return true
  },
  deleteProperty () { return true }
}

/** Gives the client an exact duplicate filter in place of aedes' highest-counter table. */
export function installDuplicateFilter (client: ClientInternals): SeenFilter {
  const filter = new SeenFilter()
  interceptDuplicates(client, filter, DUPLICATES)
  return filter
}

/**
 * One copy at the highest QoS granted [MQTT-3.3.5-1]: a message reaching the client through a QoS 0 subscription
 * (`deliver0`) while a QoS 1/2 subscription of the same client matches too is left to that one (test: 02-subpub
 * "overlapping subscriptions").
 */
export function higherSubscriptionMatches (client: ClientInternals, packet: DeliverPacket): boolean {
  return maxMatchingQos(client.subscriptions, packet.topic, packet.qos) > 0
}
