/**
 * The outgoing window, `max_inflight_messages` as in mosquitto: at most N QoS 1/2 PUBLISH packets sent to this
 * client and not yet acknowledged, by PUBACK for QoS 1 and by PUBCOMP for QoS 2 (a PUBREC does not free the slot, as
 * in mosquitto). aedes has no window: it writes every message at once. Further QoS 1/2 deliveries wait here, in
 * order, and go out one per acknowledgement (how many may wait: slow-consumer.ts). QoS 0 messages are not windowed
 * (mosquitto sends them while QoS 1/2 ones are queued). Without `max_inflight_messages`, a v5 client that announces a
 * Receive Maximum gets that as its window, and a Receive Maximum below the window narrows it [MQTT-3.3.4-7].
 *
 * Midge gives each windowed message its packet identifier itself, from aedes' own counter (`_nextId`, which
 * QoSPacket uses when the packet has none), and reads PUBACK/PUBCOMP off aedes' parser: the broker's `ack` event
 * carries the stored packet, which clean sessions do not have, so it cannot tell which message was acked. A live
 * delivery never takes a packet identifier still in flight (a stored one included, see stored-window.ts).
 */
import { takePacketId, type BrokerInternals, type ClientInternals, type DeliverPacket, type ParsedPacket } from '../../aedes/internals.js'
import type { DeliveryOptions } from './options.js'

/** A delivery waiting for a slot, with the release of the publisher it holds (if it holds one). */
export interface Waiting { packet: DeliverPacket, release: (() => void) | undefined }

/** What the slow-consumer rule reads of the window. */
export interface WindowView {
  /** The stored queue is being sent: live QoS 1/2 deliveries wait behind it. */
  readonly replaying: boolean
  /** When the last acknowledgement freed a slot, or the window last started filling. */
  readonly lastAck: number
  waitingCount (): number
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

/** Deliveries waiting for a slot, oldest first: an array read from a head index, compacted as it empties. */
class WaitQueue {
  private items: Array<Waiting | undefined> = []
  private head = 0

  get size (): number { return this.items.length - this.head }

  push (w: Waiting): void { this.items.push(w) }

  /** The oldest waiting delivery, taken off the queue; undefined when none waits. */
  shift (): Waiting | undefined {
    if (this.head === this.items.length) return undefined
    const w = this.items[this.head]
    this.items[this.head++] = undefined
    return w
  }

  /** Frees what was taken: all of it once empty, else the taken head once it is most of a long array. */
  compact (): void {
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }

  /** Empties the queue, returning what waited. */
  clear (): Array<Waiting | undefined> {
    const left = this.head === 0 ? this.items : this.items.slice(this.head)
    this.items = []
    this.head = 0
    return left
  }
}

export class OutgoingWindow implements WindowView {
  /** The window's size: 0 = no window (nothing waits, no packet id is given here). */
  readonly size: number
  /** Sent and unacknowledged QoS 1/2 messages. */
  inflight = 0
  /** Their packet ids, each with the QoS whose acknowledgement frees it. */
  private ids: Map<number, number> | undefined
  private readonly waiting = new WaitQueue()
  lastAck = Date.now()
  replaying: boolean

  constructor (private readonly client: ClientInternals, opts: DeliveryOptions, connect: ParsedPacket | undefined) {
    this.size = (opts.maxInflight ?? 0) > 0 ? opts.maxInflight! : announcedReceiveMaximum(client, connect) ?? 0
    // until aedes has written a returning session's stored queue (`connected`), live QoS 1/2 deliveries wait behind it
    this.replaying = this.size > 0 && !client.connected
  }

  /** The slots of the window: a v5 client's Receive Maximum narrows it (aedes sets it from CONNECT, before any delivery). */
  slots (): number {
    const r = this.client.receiveMaximum
    return r !== undefined && r < this.size ? r : this.size
  }

  /** Ready for flight: a QoS 1/2 delivery may go out now (no window, or a free slot and nothing older waiting). */
  readyForFlight (): boolean {
    return this.size === 0 || (!this.replaying && this.inflight < this.slots() && this.waiting.size === 0)
  }

  /** A slot is free for what waits (or for a stored message). */
  hasSlot (): boolean {
    return !this.replaying && this.inflight < this.slots()
  }

  waitingCount (): number { return this.waiting.size }

  wait (packet: DeliverPacket, release: (() => void) | undefined): void {
    this.waiting.push({ packet, release })
  }

  /** The oldest delivery waiting, taken off the queue. */
  nextWaiting (): Waiting | undefined { return this.waiting.shift() }

  compactWaiting (): void { this.waiting.compact() }

  /** What waits, taken off the queue: the connection is gone. */
  dropWaiting (): Array<Waiting | undefined> { return this.waiting.clear() }

  isInFlight (id: number): boolean {
    return this.ids?.has(id) === true
  }

  /** aedes' next packet identifier that is not in flight (a stored message's may be). */
  nextId (): number {
    let id = takePacketId(this.client)
    for (let i = 0; i < 65535 && this.ids?.has(id); i++) id = takePacketId(this.client)
    return id
  }

  /** `id` holds a slot until the acknowledgement of `qos` arrives. */
  take (id: number, qos: number): void {
    (this.ids ??= new Map()).set(id, qos)
    if (this.inflight++ === 0) this.lastAck = Date.now()
  }

  /** The message in flight as `id` is acknowledged as `qos` instead (lowered before it was written). */
  retake (id: number, qos: number): void {
    (this.ids ??= new Map()).set(id, qos)
  }

  /**
   * aedes will write this packet (not a duplicate, authorizeForward let it through): give it the next packet id,
   * which QoSPacket takes instead of its own, and hold a slot until it is acknowledged. aedes lowers the QoS to an
   * exact-topic subscription's after that: a message going out at QoS 0 takes no slot.
   */
  takeForwarded (forwarded: DeliverPacket): void {
    const sub = this.client.subscriptions[forwarded.topic]
    const qos = sub !== undefined && sub.qos < forwarded.qos ? sub.qos : forwarded.qos
    if (qos > 0 && !forwarded.messageId) this.take(forwarded.messageId = this.nextId(), qos)
  }

  /** PUBACK frees a QoS 1 slot, PUBCOMP a QoS 2 one; an identifier this window did not send frees nothing. */
  acknowledges (p: ParsedPacket): boolean {
    if (p.cmd !== 'puback' && p.cmd !== 'pubcomp') return false
    const qos = this.ids?.get(p.messageId!)
    if (qos !== (p.cmd === 'puback' ? 1 : 2)) return false
    this.lastAck = Date.now()
    return true
  }

  free (id: number): void {
    this.ids?.delete(id)
    this.inflight--
  }
}

/** Told what aedes' `authorizeForward` answered for a packet of one client. */
export interface ForwardWatcher {
  forwarded (packet: DeliverPacket, result: DeliverPacket | null | undefined): void
}

const watchers = new WeakMap<object, ForwardWatcher>()
const wrappedBrokers = new WeakSet<object>()

/**
 * aedes decides inside deliverQoS (dedupe, then authorizeForward) whether it will write a message, synchronously,
 * and builds the QoSPacket from that answer one tick later: the window reads the answer there to give the packet
 * its identifier. authorizeForward is wrapped once per broker, outermost, and tells the client's watcher.
 */
export function watchForward (client: ClientInternals, watcher: ForwardWatcher): void {
  const broker: BrokerInternals = client.broker
  watchers.set(client, watcher)
  if (wrappedBrokers.has(broker)) return
  wrappedBrokers.add(broker)
  const orig = broker.authorizeForward
  broker.authorizeForward = function authorizeForward (c, packet) {
    const r = orig.call(this, c, packet)
    if (typeof c === 'object' && c !== null) watchers.get(c)?.forwarded(packet, r)
    return r
  }
}
