/**
 * Live delivery to one client, wrapped around aedes' per-client `deliverQoS` / `deliver0` (issue 3). Installed on
 * every aedes Client right after `aedes.handle()` creates it, before it has parsed a byte.
 *
 * 1. aedes' duplicate filter drops messages. It keeps, per client and per broker id, the highest `brokerCounter`
 *    delivered and drops anything lower (lib/client.js `dedupe`). Counters are assigned when `broker.publish` starts,
 *    but messages reach subscribers when their store writes end: a retained message (one LevelDB write) overtaken by a
 *    plain one is then dropped for every subscriber matching both. Measured on bare aedes 1.2.0 with
 *    aedes-persistence-level: 200 QoS 0 publishes alternating retained / not retained, a `#` subscriber gets 100.
 *    Midge keeps aedes' purpose (one copy per client when several of its subscriptions match) with an exact filter:
 *    the last `brokerId:counter` keys delivered to this client.
 *
 * 2. Slow consumers. aedes holds the emitter's callback until the subscriber's socket drains, and reads the
 *    publisher's next chunk only when every subscriber of the last one is done: a subscriber that stops reading
 *    stalls its publishers (and so everyone they publish to) until `drainTimeout` (30 s) closes it. Midge keeps
 *    that backpressure while the subscriber makes progress, but once none of its writes has completed for
 *    `stuckAfterMs` (1 s) it releases the publishers and stops holding them for that client until it reads again.
 *    What waits for its socket is bounded: beyond `max_inflight_messages + max_queued_messages` messages (or
 *    `max_queued_bytes` buffered), messages to that client are dropped, counted (`stats.droppedSlowConsumer`) and
 *    logged once per episode. For a persistent session a dropped QoS 1/2 message stays in its stored queue and is
 *    sent when the client reconnects; `drainTimeout` still closes a client that reads nothing for 30 s.
 *
 * 3. A message the store refused for this client (its queue full, see persistence/limits.ts) is not delivered:
 *    aedes would fail to find it in the store and close the connection.
 */
import type { Client } from 'aedes'
import { topicMatches } from './topic-match.js'
import type { Logger } from '../logging/logger.js'
import type { PersistenceStats, QueueAccounting } from '../persistence/limits.js'

type Deliver = (packet: DeliverPacket, cb: (err?: Error | null) => void) => void
interface DeliverPacket { topic: string, qos: number, brokerId?: string | null, brokerCounter?: number }

interface AedesClientInternals {
  id: string | null
  clean: boolean
  closed: boolean
  conn: { writableLength?: number }
  deliverQoS: Deliver
  deliver0: Deliver
  duplicates: Record<string, number>
  subscriptions: Record<string, { qos: number }>
}

/** True if one of the client's subscriptions with QoS > 0 matches `topic`. */
function hasQosSubscription (client: AedesClientInternals, topic: string): boolean {
  for (const filter in client.subscriptions) {
    if (client.subscriptions[filter]!.qos > 0 && topicMatches(filter, topic)) return true
  }
  return false
}

export interface DeliveryOptions {
  /** Messages waiting for one client's socket before new ones are dropped; 0 = no limit. */
  maxPending: number
  /** Bytes buffered for one client's socket before new messages are dropped; 0 = no limit. */
  maxPendingBytes: number
  /** A client none of whose writes completed for this long is stuck: publishers stop waiting for it. */
  stuckAfterMs: number
  stats: PersistenceStats
  accounting?: QueueAccounting
  log: Logger
}

/** How many delivered `brokerId:counter` keys a client remembers for the duplicate filter. */
const SEEN_LIMIT = 1024

export function installDelivery (aedesClient: Client, opts: DeliveryOptions): void {
  const client = aedesClient as unknown as AedesClientInternals
  const origQoS = client.deliverQoS
  const orig0 = client.deliver0
  let current: DeliverPacket | undefined
  const seen = new Set<string>()
  /** Messages handed to aedes for this client whose write has not completed (waiting for the socket to drain). */
  let pending = 0
  let dropping = false

  // (1) aedes calls `dedupe` synchronously inside deliverQoS/deliver0: `(duplicates[id] || 0) < counter` decides,
  // then `duplicates[id] = counter` records. The packet being delivered is `current`.
  client.duplicates = new Proxy(Object.create(null) as Record<string, number>, {
    get (_t, id) {
      if (current === undefined || typeof id !== 'string') return 0
      return seen.has(`${id}:${current.brokerCounter}`) ? Number.POSITIVE_INFINITY : 0
    },
    set (_t, id) {
      if (current === undefined || typeof id !== 'string') return true
      if (seen.size >= SEEN_LIMIT) seen.delete(seen.values().next().value as string)
      seen.add(`${id}:${current.brokerCounter}`)
      return true
    },
    deleteProperty () { return true }
  })

  // (2) emitter callbacks held for this client (the publishers wait for them), released when written or when stuck
  const held = new Set<() => void>()
  let lastProgress = Date.now()
  let stuck = false
  let timer: NodeJS.Timeout | undefined

  const releaseAll = (): void => {
    for (const release of [...held]) release()
  }
  const watch = (): void => {
    if (timer !== undefined) return
    timer = setTimeout(function check () {
      timer = undefined
      if (pending === 0) return
      const idle = Date.now() - lastProgress
      if (idle >= opts.stuckAfterMs) {
        // not one write of this client completed for a while: stop holding the publishers
        stuck = true
        releaseAll()
        return
      }
      timer = setTimeout(check, opts.stuckAfterMs - idle)
      timer.unref()
    }, opts.stuckAfterMs)
    timer.unref()
  }

  const wrap = (orig: Deliver, qos0: boolean): Deliver => function deliver (packet, cb) {
    // deliverQoS hands a QoS 0 message on to deliver0: already counted by the outer call
    if (client.closed || current === packet) { orig(packet, cb); return }
    // (1) one copy at the highest QoS granted [MQTT-3.3.5-1]: the QoS 0 subscription must not be the one that
    // wins when a QoS 1/2 subscription of the same client matches too (test: 02-subpub "overlapping subscriptions")
    if (qos0 && packet.qos > 0 && hasQosSubscription(client, packet.topic)) { setImmediate(cb); return }
    if (packet.qos > 0 && !client.clean && client.id !== null && opts.accounting?.wasRefused(client.id, { brokerId: packet.brokerId ?? undefined, brokerCounter: packet.brokerCounter })) {
      setImmediate(cb)
      return
    }
    const full = (opts.maxPending > 0 && pending >= opts.maxPending) ||
      (opts.maxPendingBytes > 0 && (client.conn.writableLength ?? 0) >= opts.maxPendingBytes)
    if (full) {
      opts.stats.droppedSlowConsumer++
      if (!dropping) {
        dropping = true
        opts.log.warn({ clientId: client.id, topic: packet.topic, pending },
          `Outgoing messages are being dropped for client ${client.id ?? '?'}: it is not reading (max_inflight_messages + max_queued_messages reached).`)
      }
      setImmediate(cb)
      return
    }
    if (pending === 0) lastProgress = Date.now()
    pending++
    let release: (() => void) | undefined
    if (!stuck) {
      // as aedes: the publisher waits until this client's socket took the message (backpressure) ...
      release = () => { if (held.delete(release!)) cb() }
      held.add(release)
      watch()
    }
    const prev = current
    current = packet
    try {
      orig(packet, () => {
        pending--
        lastProgress = Date.now()
        stuck = false
        if (dropping && pending === 0) dropping = false
        release?.()
      })
    } finally {
      current = prev
    }
    // ... unless it is stuck: then it does not wait at all
    if (stuck) setImmediate(cb)
  }
  client.deliverQoS = wrap(origQoS, false)
  client.deliver0 = wrap(orig0, true)
}
