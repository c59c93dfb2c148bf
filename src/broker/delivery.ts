/**
 * Live delivery to one client, wrapped around aedes' per-client `deliverQoS` / `deliver0`. Installed on
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
 *    that backpressure (made effective by read-loop.ts) while the subscriber makes progress, but once none of its
 *    writes has completed for `stuckAfterMs` (1 s), or messages wait for its window (4) and it acknowledged nothing
 *    for that long, it releases the publishers and stops holding them for that client until it catches up: all
 *    handed to its socket written, or, stuck on its window, an acknowledgement. (Ending it on any completed write
 *    held every publisher again for a second each time: the QoS 0 messages a client reads do not move its window,
 *    and a non-reading socket still takes a write now and then as the kernel's buffers grow.)
 *    What waits for its socket is bounded: once it is stuck, beyond `max_inflight_messages + max_queued_messages`
 *    messages (or, at any time, `max_queued_bytes` buffered), messages to that client are dropped, counted (`stats.droppedSlowConsumer`) and
 *    logged once per episode. For a persistent session a dropped QoS 1/2 message stays in its stored queue and is
 *    sent when the client reconnects; `drainTimeout` still closes a client that reads nothing for 30 s.
 *
 * 3. A message the store refused for this client (its queue full, see persistence/limits.ts) is not delivered:
 *    aedes would fail to find it in the store and close the connection.
 *
 * 4. `max_inflight_messages` (mosquitto's outgoing window): at most N QoS 1/2 PUBLISH packets sent to this client
 *    and not yet acknowledged, by PUBACK for QoS 1 and by PUBCOMP for QoS 2 (a PUBREC does not free the slot, as in
 *    mosquitto). aedes 1.2.0 has no window: it writes every message at once. Further QoS 1/2 deliveries wait here,
 *    in order, and go out one per acknowledgement. At most `max_queued_messages` wait (as in mosquitto; beyond, they
 *    are dropped and counted as in (2)) once the client has acknowledged nothing for `stuckAfterMs`: a subscriber
 *    that keeps acknowledging is not dropped because QoS 0 traffic delays its acks. Each holds its publisher like a pending write, and a client that reads
 *    but acknowledges nothing for `stuckAfterMs` is stuck.
 *    QoS 0 messages are not windowed (mosquitto sends them while QoS 1/2 ones are queued).
 *    Midge gives each windowed message its packet identifier itself, from aedes' own counter (`_nextId`, which
 *    QoSPacket uses when the packet has none), and reads PUBACK/PUBCOMP off aedes' parser: the broker's `ack`
 *    event carries the stored packet, which clean sessions do not have, so it cannot tell which message was acked.
 *    A live delivery never takes a packet identifier still in flight (a stored one included, see (5)).
 *
 * 5. The stored queue of a persistent session shares that window. aedes sends it on reconnect itself
 *    (lib/handlers/connect.js `emptyQueue`: `persistence.outgoingStream(client)` piped to `write()`, after CONNACK,
 *    not through deliverQoS), all of it at once. resend-dup.ts passes that stream through `admitStored` below: a
 *    stored message goes on to aedes only when it has a slot (an already-sent one keeps its stored packet id and
 *    DUP=1, a never-sent one gets the next free id), and the same PUBACK/PUBCOMP listener frees its slot. Until the
 *    whole stored queue is written (aedes' `connected` event, emitted when `emptyQueue` ends), live QoS 1/2
 *    deliveries wait behind it, so they go out after the stored ones, as in mosquitto (QoS 0 ones do not wait).
 *    A clean session's stale queue (aedes clears it message by message, writing nothing) takes no slot.
 *    aedes asks authorizeForward before it writes a stored message (the wrapper above sees the answer): refused, the
 *    message is not written and its slot is free; lowered to the subscription's QoS (aedes stores the publish QoS,
 *    aedes-hooks clampQos lowers it), its slot waits for that QoS's acknowledgement. The stored messages sent are
 *    remembered by the duplicate filter (1): a live copy of one (enqueued before the store was read) is not sent
 *    twice. If the connection closes mid-way, the stream ends with an error (as aedes' own write error would end
 *    it); what was not sent stays in the store, which aedes only clears on acknowledgement. Measured with
 *    `max_inflight_messages 5` and 50 queued (test: 16-inflight-replay): 5 before any acknowledgement, then one per
 *    PUBACK/PUBCOMP; mosquitto 2.0.11 also sends 5 first, then 5 more per acknowledgement (up to 9 in flight).
 *
 * 6. Nothing goes out before the CONNACK [MQTT-3.2.0-1]: see `holdUntilConnack`.
 */
import type { Client } from 'aedes'
import { buildDelivery, deliverThrough, takePacketId, type BrokerInternals, type ClientInternals, type Deliver, type DeliverPacket, type DeliveryBuilder, type DeliveryPair, type ParsedPacket } from '../aedes/internals.js'
import { maxMatchingQos } from '../mqtt/topic-match.js'
import { sendRetainedInBatches } from './retained-batch.js'
import type { Logger } from '../logging/logger.js'
import type { PersistenceStats, QueueAccounting } from '../persistence/limits.js'

interface Waiting { packet: DeliverPacket, release: (() => void) | undefined }
type AedesBrokerInternals = BrokerInternals
type AedesClientInternals = ClientInternals

/**
 * (4) What aedes' `authorizeForward` answered in the current synchronous deliverQoS call: aedes decides there
 * (dedupe, then authorizeForward) whether it will write the message, and builds the QoSPacket from that answer
 * one tick later. Wrapped once per broker.
 */
let forwardedTo: unknown
let forwarded: DeliverPacket | null | undefined
const wrappedBrokers = new WeakSet<object>()
function captureForward (broker: AedesBrokerInternals): void {
  if (wrappedBrokers.has(broker)) return
  wrappedBrokers.add(broker)
  const orig = broker.authorizeForward
  broker.authorizeForward = function authorizeForward (client, packet) {
    const r = orig.call(this, client, packet)
    forwardedTo = client
    forwarded = r
    if (typeof client === 'object' && client !== null) storedWindows.get(client)?.forwarded(packet, r)
    return r
  }
}

/**
 * (6) [MQTT-3.2.0-1] The first packet the server sends is the CONNACK. aedes restores a returning persistent
 * session's subscriptions before it writes the CONNACK (several store round trips with LevelDB or Redis), and its
 * `write()` accepts a client that is still connecting: messages routed in that gap went out first. MQTT.js handles
 * and acknowledges them before its `connect` event (40-cluster: 4 of 1200 queued messages acknowledged unseen).
 * Deliveries that arrive before the CONNACK is written wait here, in order, and go on when aedes reports it sent.
 */
const beforeConnack = new WeakMap<object, Array<(sent: boolean) => void>>()
const connackWatched = new WeakSet<object>()
function holdUntilConnack (client: AedesClientInternals, go: () => void, drop: () => void): void {
  const broker = client.broker
  if (!connackWatched.has(broker)) {
    connackWatched.add(broker)
    broker.on('connackSent', (_packet, c) => {
      if (!beforeConnack.has(c)) return
      // aedes emits this just before it sets `connackSent`: go on once it has
      queueMicrotask(() => {
        const held = beforeConnack.get(c)
        beforeConnack.delete(c)
        if (held !== undefined) for (const f of held) f(true)
      })
    })
  }
  let held = beforeConnack.get(client)
  if (held === undefined) {
    beforeConnack.set(client, held = [])
    // refused or gone before its CONNACK: the messages are not sent (a persistent session keeps its stored copies)
    client.conn.once('close', () => {
      const left = beforeConnack.get(client)
      beforeConnack.delete(client)
      if (left !== undefined) for (const f of left) f(false)
    })
  }
  held.push(sent => { if (sent && !client.closed) go(); else drop() })
}

export interface DeliveryOptions {
  /** Messages waiting for one client's socket before new ones are dropped; 0 = no limit. */
  maxPending: number
  /** QoS 1/2 messages sent to one client and not yet acknowledged (`max_inflight_messages`); 0 = no limit. */
  maxInflight?: number
  /** Messages waiting for a slot in that window before new ones are dropped (`max_queued_messages`); 0 = no limit. */
  maxWaiting?: number
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

/** (5) A packet of a persistent session's stored queue, as the store's outgoingStream yields it. */
export interface StoredPacket { cmd?: string, qos?: number, messageId?: number, brokerId?: string, brokerCounter?: number }
interface StoredQueueWindow {
  admit (packet: StoredPacket, go: (err?: Error) => void): void
  /** (5) aedes' authorizeForward answered for a packet of this client. */
  forwarded (packet: DeliverPacket, result: DeliverPacket | null | undefined): void
}
const storedWindows = new WeakMap<object, StoredQueueWindow>()

/** (2) Clients none of whose writes (or acknowledgements) completed for `stuckAfterMs`: publishers no longer wait for them. */
const stuckClients = new WeakSet<object>()

/**
 * (2) Publishers wait for this connected client (backpressure) rather than it being stuck. persistence/limits.ts
 * then does not apply `max_queued_messages` to its stored queue: what waits for it is bounded by its publishers'
 * read batches, and a subscriber that keeps acknowledging loses nothing however many publishers send to it.
 */
export function keepsUp (client: object): boolean {
  return !stuckClients.has(client)
}

/**
 * (5) Calls `go` once the stored packet may be handed to aedes: at once when it needs no slot (no window, QoS 0, an
 * identifier already in flight), else when the client's window has a slot, which it then holds (a never-sent packet
 * gets its packet id here). `go(err)` if the connection closes first.
 */
export function admitStored (client: unknown, packet: StoredPacket, go: (err?: Error) => void): void {
  if (typeof client === 'object' && client !== null) buildDelivery(client)
  const w = typeof client === 'object' && client !== null ? storedWindows.get(client) : undefined
  if (w === undefined) go()
  else w.admit(packet, go)
}

/**
 * (1) The exact duplicate filter of one client, as the target of the Proxy that replaces aedes' `client.duplicates`
 * (one shared handler, no closures per client). aedes calls `dedupe` synchronously inside deliverQoS/deliver0:
 * `(duplicates[id] || 0) < counter` decides, then `duplicates[id] = counter` records; the packet being delivered is
 * `current`. The last SEEN_LIMIT (brokerId, counter) pairs delivered are kept per broker id as numbers, evicted
 * oldest first from a ring: no string per lookup, no Set iterator (a Set's first entry is found by skipping its
 * deleted slots). Nothing is allocated until the first delivery: an idle connection holds none of it.
 */
class SeenFilter {
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

/** One builder per options object (one per broker). */
const builders = new WeakMap<DeliveryOptions, DeliveryBuilder>()

/** The layer is built when the client first subscribes or is delivered to (aedes/internals.ts `deliverThrough`). */
export function installDelivery (aedesClient: Client, opts: DeliveryOptions): void {
  let build = builders.get(opts)
  // a new subscription's retained messages: many per turn (retained-batch.ts)
  if (build === undefined) builders.set(opts, build = sendRetainedInBatches((client, origQoS, orig0, connect) => buildLayer(client, origQoS, orig0, opts, connect)))
  deliverThrough(aedesClient, build)
}

/** What MQTT 5 assumes when a client announces no Receive Maximum: no bound beyond the packet identifiers. */
const RECEIVE_MAXIMUM_DEFAULT = 65_535

/** The Receive Maximum a v5 client announced, from its CONNECT (`connect`, when aedes has not handled it yet). */
function announcedReceiveMaximum (client: ClientInternals, connect: ParsedPacket | undefined): number | undefined {
  const r = connect !== undefined
    ? (connect.protocolVersion === 5 ? connect.properties?.receiveMaximum : undefined)
    : (client.version === 5 ? client.receiveMaximum : undefined)
  return r !== undefined && r > 0 && r < RECEIVE_MAXIMUM_DEFAULT ? r : undefined
}

function buildLayer (client: ClientInternals, origQoS: Deliver, orig0: Deliver, opts: DeliveryOptions, connect: ParsedPacket | undefined): DeliveryPair {
  /** Messages handed to aedes for this client whose write has not completed (waiting for the socket to drain). */
  let pending = 0
  let dropping = false
  // (4) the outgoing window: sent and unacknowledged QoS 1/2 messages (packet id -> QoS), and those waiting for a slot
  // without `max_inflight_messages`, a v5 client that announces a Receive Maximum gets that as its window
  // [MQTT-3.3.4-7]
  const window = (opts.maxInflight ?? 0) > 0 ? opts.maxInflight! : announcedReceiveMaximum(client, connect) ?? 0
  // a v5 client's Receive Maximum narrows the window [MQTT-3.3.4-7]; aedes sets it from CONNECT, before any delivery
  const slots = (): number => {
    const r = client.receiveMaximum
    return r !== undefined && r < window ? r : window
  }
  let inflight = 0
  let inflightIds: Map<number, number> | undefined
  const ids = (): Map<number, number> => {
    inflightIds ??= new Map()
    return inflightIds
  }
  let waiting: Waiting[] = []
  let waitHead = 0
  /** When the last acknowledgement freed a slot, or the window last started filling. */
  let lastAck = Date.now()
  // (5) until aedes has written the stored queue (`connected`), live QoS 1/2 deliveries wait behind it; the ids of
  // stored messages in flight; the stored packet waiting for a slot
  let replaying = window > 0 && !client.connected
  let storedIds: Map<number, StoredPacket> | undefined
  let storedWaiting: { packet: StoredPacket, go: (err?: Error) => void } | undefined

  // (1) the duplicate filter (SeenFilter above)
  const filter = new SeenFilter()
  /** (6) deliveries are held for the CONNACK */
  let connackHold = false
  client.duplicates = new Proxy(filter, DUPLICATES) as unknown as Record<string, number>

  // (2) emitter callbacks held for this client (the publishers wait for them), released when written or when stuck
  let held: Set<() => void> | undefined
  let lastProgress = Date.now()
  let stuck = false
  /** Stuck because messages wait for its window and it acknowledged nothing: only an acknowledgement ends it. */
  let stuckOnAcks = false
  let timer: NodeJS.Timeout | undefined

  const releaseAll = (): void => {
    if (held !== undefined) for (const release of [...held]) release()
  }
  const watch = (): void => {
    if (timer !== undefined) return
    timer = setTimeout(function check () {
      timer = undefined
      if (pending === 0 && waitHead === waiting.length) return
      const now = Date.now()
      const idle = now - lastProgress
      const ackIdle = waitHead < waiting.length ? now - lastAck : 0
      // messages wait for its window and no acknowledgement came for a while (the QoS 0 ones it reads meanwhile do
      // not count: they would keep its publishers waiting for a window that does not move), or not one write of
      // this client completed for a while: stop holding the publishers
      if (ackIdle >= opts.stuckAfterMs || idle >= opts.stuckAfterMs) {
        stuck = true
        stuckOnAcks = ackIdle >= opts.stuckAfterMs
        opts.stats.stuckEpisodes++
        stuckClients.add(client)
        releaseAll()
        return
      }
      timer = setTimeout(check, opts.stuckAfterMs - Math.max(idle, ackIdle))
      timer.unref()
    }, opts.stuckAfterMs)
    timer.unref()
  }

  const wrap = (orig: Deliver, qos0: boolean): Deliver => function deliver (packet, cb) {
    // deliverQoS hands a QoS 0 message on to deliver0: already counted by the outer call
    if (client.closed || filter.current === packet) { orig(packet, cb); return }
    // (6) nothing before the CONNACK
    if (!client.connackSent || connackHold) {
      connackHold = true // until the held ones go on: later ones queue behind them (no map lookup per message)
      holdUntilConnack(client, () => { connackHold = false; deliver(packet, cb) }, () => { connackHold = false; setImmediate(cb) })
      return
    }
    // (1) one copy at the highest QoS granted [MQTT-3.3.5-1]: the QoS 0 subscription must not be the one that
    // wins when a QoS 1/2 subscription of the same client matches too (test: 02-subpub "overlapping subscriptions")
    const viaQos0 = qos0 && packet.qos > 0
    if (viaQos0 && maxMatchingQos(client.subscriptions, packet.topic, packet.qos) > 0) { setImmediate(cb); return }
    if (packet.qos > 0 && !client.clean && client.id !== null && opts.accounting?.wasRefused(client.id, { brokerId: packet.brokerId ?? undefined, brokerCounter: packet.brokerCounter })) {
      setImmediate(cb)
      return
    }
    // this QoS 0 subscription is the client's highest match: it goes out at 0, so authorizeForward need not scan again
    if (viaQos0) packet.qos = 0
    // (4) it would wait for the window: as mosquitto, at most `max_queued_messages` wait, unless the client is
    // acknowledging (one within `stuckAfterMs`): a subscriber that keeps up is not dropped for its ack round trip
    const waits = window > 0 && !qos0 && packet.qos > 0 && (replaying || inflight >= slots() || waitHead < waiting.length)
    // the count limit applies to a stuck client only: while it makes progress its publishers wait for it (bounded
    // by what they may send per read), and a burst of one event-loop turn (200 publishers' reads, thousands of
    // messages handed to aedes before the first is written) is not a slow consumer
    const full = (stuck && opts.maxPending > 0 && pending >= opts.maxPending) ||
      (opts.maxPendingBytes > 0 && (client.conn.writableLength ?? 0) >= opts.maxPendingBytes) ||
      (waits && opts.maxWaiting !== undefined && opts.maxWaiting > 0 && waiting.length - waitHead >= opts.maxWaiting &&
        Date.now() - lastAck >= opts.stuckAfterMs)
    if (full) {
      opts.stats.droppedSlowConsumer++
      if (!dropping) {
        dropping = true
        opts.log.warn({ clientId: client.id, topic: packet.topic, pending, waiting: waiting.length - waitHead },
          `Outgoing messages are being dropped for client ${client.id ?? '?'}: it is not reading (max_inflight_messages + max_queued_messages reached).`)
      }
      setImmediate(cb)
      return
    }
    if (pending === 0 && waitHead === waiting.length) lastProgress = Date.now()
    let release: (() => void) | undefined
    // (4) a message that waits for this client's window holds its publisher only while this client's own reads go
    // on (no batch of its own in progress): its PUBACKs must be read to free the window. Else a client receiving
    // its own messages, or two clients publishing to each other, would wait for acknowledgements nobody reads
    // until one counts as stuck (1 s), again and again. A chain of held publishers thus always ends at a client
    // whose reads go on. Nor while its stored queue is being sent (5): that can take seconds, and what waits
    // behind it is stored too. Past `max_queued_messages` waiting, it holds them anyway (stuck after a second).
    const hold = !stuck && (!waits || (!replaying && client._parsingBatch <= 0) ||
      (opts.maxWaiting !== undefined && opts.maxWaiting > 0 && waiting.length - waitHead >= opts.maxWaiting))
    if (hold) {
      // as aedes: the publisher waits until this client's socket took the message (backpressure) ...
      release = () => { if (held!.delete(release!)) cb() }
      ;(held ??= new Set()).add(release)
      watch()
    } else {
      // ... unless it is stuck (or its reads wait, above): then it does not wait at all
      setImmediate(cb)
    }
    // (4) the window is full, or older messages wait for it: wait in order (the publisher too, until it is written
    // or this client is stuck: a client that reads but does not acknowledge is stuck after `stuckAfterMs`)
    if (waits) {
      waiting.push({ packet, release })
      return
    }
    send(orig, qos0, packet, release)
  }

  /** Hand one message to aedes; `release` frees the publisher once it is written. */
  const send = (orig: Deliver, qos0: boolean, packet: DeliverPacket, release: (() => void) | undefined): void => {
    pending++
    const prev = filter.current
    filter.current = packet
    const windowed = window > 0 && !qos0 && packet.qos > 0
    if (windowed) forwarded = forwardedTo = undefined
    try {
      orig(packet, () => {
        pending--
        lastProgress = Date.now()
        // once stuck, it is not stuck again until everything handed to its socket is written (a write that
        // completes while it still reads nothing, the kernel's buffers growing, would hold every publisher again
        // for `stuckAfterMs`), or, stuck on its window, until it acknowledges
        if (stuck && !stuckOnAcks && pending === 0) { stuck = false; stuckClients.delete(client) }
        if (dropping && pending === 0) dropping = false
        release?.()
      })
    } finally {
      filter.current = prev
    }
    // (4) aedes will write it (not a duplicate, authorizeForward let it through): give it the next packet id, which
    // QoSPacket takes instead of its own, and hold a slot until it is acknowledged. aedes lowers the QoS to an
    // exact-topic subscription's after that: a message going out at QoS 0 takes no slot.
    if (windowed && forwardedTo === client && forwarded) {
      const sub = client.subscriptions[forwarded.topic]
      const qos = sub !== undefined && sub.qos < forwarded.qos ? sub.qos : forwarded.qos
      if (qos > 0 && !forwarded.messageId) {
        const id = nextId()
        forwarded.messageId = id
        ids().set(id, qos)
        if (inflight++ === 0) lastAck = Date.now()
      }
    }
  }

  /** (4) aedes' next packet identifier that is not in flight (a stored message's may be: see (5)). */
  const nextId = (): number => {
    let id = takePacketId(client)
    for (let i = 0; i < 65535 && inflightIds?.has(id); i++) id = takePacketId(client)
    return id
  }

  /** (5) A stored packet takes a slot if it needs one and one is free; false if it must wait. */
  const admitNow = (packet: StoredPacket): boolean => {
    const qos = packet.cmd === 'pubrel' ? 2 : packet.qos ?? 0
    if (qos === 0 || (packet.messageId && inflightIds?.has(packet.messageId))) return true
    if (inflight >= slots()) return false
    // a never-sent message: QoSPacket keeps the id it has, and aedes stores it with outgoingUpdate
    const id = packet.messageId || (packet.messageId = nextId())
    ids().set(id, qos)
    storedIds ??= new Map()
    storedIds.set(id, packet)
    if (inflight++ === 0) lastAck = Date.now()
    if (packet.cmd !== 'pubrel' && packet.brokerId) filter.remember(packet.brokerId, packet.brokerCounter ?? 0)
    return true
  }

  /** (4)(5) One slot is free again: the stored queue first, then what waits, oldest first. */
  const freed = (id: number): void => {
    inflightIds?.delete(id)
    storedIds?.delete(id)
    inflight--
    if (storedWaiting !== undefined && admitNow(storedWaiting.packet)) {
      const { go } = storedWaiting
      storedWaiting = undefined
      go()
    }
    flush()
  }

  /** (4) Slots are free: send what waits, oldest first. */
  const flush = (): void => {
    // send() changes `inflight` (and a returning session's replay ends `replaying`) through closures
    // eslint-disable-next-line no-unmodified-loop-condition
    while (!replaying && inflight < slots() && waitHead < waiting.length) {
      if (client.closed) { waiting = []; waitHead = 0; return }
      const w = waiting[waitHead]!
      waiting[waitHead++] = undefined as unknown as Waiting
      send(origQoS, false, w.packet, w.release)
    }
    if (waitHead === waiting.length) { waiting = []; waitHead = 0 } else if (waitHead > 1024 && waitHead * 2 > waiting.length) {
      waiting = waiting.slice(waitHead)
      waitHead = 0
    }
  }

  if (window > 0) {
    captureForward(client.broker)
    // PUBACK frees a QoS 1 slot, PUBCOMP a QoS 2 one; an identifier this window did not send frees nothing
    client._parser.prependListener('packet', (p) => {
      if (p.cmd !== 'puback' && p.cmd !== 'pubcomp') return
      const qos = inflightIds?.get(p.messageId!)
      if (qos !== (p.cmd === 'puback' ? 1 : 2)) return
      lastProgress = lastAck = Date.now()
      if (stuck) { stuck = stuckOnAcks = false; stuckClients.delete(client) }
      freed(p.messageId!)
    })
    // (5) the stored queue is written: live deliveries go on, behind it
    client.once('connected', () => {
      replaying = false
      flush()
    })
    storedWindows.set(client, {
      admit (packet, go) {
        if (client.closed) { go(new Error('connection closed')); return }
        // a clean session's stale queue: aedes clears each message instead of writing it
        if (client.clean || admitNow(packet)) { go(); return }
        storedWaiting = { packet, go }
      },
      // aedes asks authorizeForward before it writes a stored message (emptyQueueFilter): refused, it clears the
      // message instead (the slot is free); lowered to the subscription's QoS (aedes-hooks clampQos), it is
      // acknowledged as such
      forwarded (packet, r) {
        if (storedIds === undefined || storedIds.size === 0 || packet.messageId === undefined) return
        const s = storedIds.get(packet.messageId)
        if (s === undefined || s.brokerId !== packet.brokerId || s.brokerCounter !== packet.brokerCounter) return
        if (!r || r.qos === 0) freed(packet.messageId)
        else ids().set(packet.messageId, r.qos)
      }
    })
    // the connection is gone: what waits is not sent (a persistent session keeps it in its stored queue), its
    // publishers go on
    client.conn.once('close', () => {
      const stored = storedWaiting
      storedWaiting = undefined
      stored?.go(new Error('connection closed'))
      const left = waiting
      waiting = []
      waitHead = 0
      for (const w of left) w?.release?.()
    })
  }

  return { deliverQoS: wrap(origQoS, false), deliver0: wrap(orig0, true) }
}
