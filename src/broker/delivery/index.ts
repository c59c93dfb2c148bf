/**
 * Live delivery to one client, wrapped around aedes' per-client `deliverQoS` / `deliver0` (aedes/internals.ts
 * `deliverThrough`: built when the client first subscribes or is delivered to). Each rule is one file; this one
 * applies them to every delivery, in this order:
 *
 *   1. connack-first.ts     nothing before the CONNACK [MQTT-3.2.0-1]
 *   2. duplicate-filter.ts  one copy per client, at the highest QoS granted; the exact duplicate filter aedes' dedupe reads
 *   3. refused-store.ts     not a message the store refused for this client
 *   4. outgoing-window.ts   ready for flight: `max_inflight_messages` / Receive Maximum, else it waits for a slot
 *   5. slow-consumer.ts     ready for the queue (else dropped); whether the publisher waits for this client
 *   then aedes' own deliverQoS / deliver0, with the packet id of the window's slot
 *
 * and stored-window.ts lets a returning session's stored queue through the same window (`admitStored`).
 */
import type { Client } from 'aedes'
import { deliverThrough, type ClientInternals, type Deliver, type DeliverPacket, type DeliveryBuilder, type DeliveryPair, type ParsedPacket } from '../../aedes/internals.js'
import { awaitsConnack, holdUntilConnack } from './connack-first.js'
import { higherSubscriptionMatches, installDuplicateFilter, type SeenFilter } from './duplicate-filter.js'
import type { DeliveryOptions } from './options.js'
import { OutgoingWindow, watchForward, type ForwardWatcher } from './outgoing-window.js'
import { refusedByStore } from './refused-store.js'
import { SlowConsumer } from './slow-consumer.js'
import { StoredWindow, type SlotOwner } from './stored-window.js'
import { sendRetainedInBatches } from './retained-batch.js'

export type { DeliveryOptions } from './options.js'
export { keepsUp } from './slow-consumer.js'
export { admitStored, type StoredPacket } from './stored-window.js'

type Callback = (err?: Error | null) => void

/** One client's delivery: the state of each rule, and the order they are applied in. */
class ClientDelivery implements ForwardWatcher, SlotOwner {
  private readonly filter: SeenFilter
  private readonly window: OutgoingWindow
  private readonly slow: SlowConsumer
  private readonly stored: StoredWindow | undefined
  /** Deliveries are held for the CONNACK: later ones queue behind them (no map lookup per message). */
  private connackHold = false
  /** What authorizeForward answered for this client in the current call into aedes' deliverQoS. */
  private forwardedPacket: DeliverPacket | null | undefined

  constructor (private readonly client: ClientInternals, private readonly origQoS: Deliver, private readonly opts: DeliveryOptions, connect: ParsedPacket | undefined) {
    this.filter = installDuplicateFilter(client)
    this.window = new OutgoingWindow(client, opts, connect)
    this.slow = new SlowConsumer(client, opts, this.window)
    if (this.window.size === 0) return
    this.stored = new StoredWindow(client, this.window, this.filter, this)
    watchForward(client, this)
    client._parser.prependListener('packet', (p) => {
      if (!this.window.acknowledges(p)) return
      this.slow.acked(this.window.lastAck)
      this.freed(p.messageId!)
    })
    // the stored queue is written: live deliveries go on, behind it
    client.once('connected', () => {
      this.window.replaying = false
      this.flush()
    })
    // the connection is gone: what waits is not sent (a persistent session keeps it in its stored queue), its
    // publishers go on
    client.conn.once('close', () => {
      this.stored?.close()
      for (const w of this.window.dropWaiting()) w?.release?.()
    })
  }

  deliver (orig: Deliver, qos0: boolean, packet: DeliverPacket, cb: Callback): void {
    const client = this.client
    // deliverQoS hands a QoS 0 message on to deliver0: already taken by the outer call
    if (client.closed || this.filter.current === packet) { orig(packet, cb); return }
    // 1. nothing before the CONNACK
    if (awaitsConnack(client, this.connackHold)) {
      this.connackHold = true
      holdUntilConnack(client, () => { this.connackHold = false; this.deliver(orig, qos0, packet, cb) }, () => { this.connackHold = false; setImmediate(cb) })
      return
    }
    // 2. one copy, at the highest QoS: a QoS 1/2 subscription of this client that matches too delivers it
    const viaQos0 = qos0 && packet.qos > 0
    if (viaQos0 && higherSubscriptionMatches(client, packet)) { setImmediate(cb); return }
    // 3. the store refused it for this client
    if (packet.qos > 0 && refusedByStore(client, this.opts.accounting, packet)) { setImmediate(cb); return }
    // this QoS 0 subscription is the client's highest match: it goes out at 0, so authorizeForward need not scan again
    if (viaQos0) packet.qos = 0
    // 4. the window is full, or older messages wait for it
    const waits = !qos0 && packet.qos > 0 && !this.window.readyForFlight()
    // 5. dropped for a stuck client; else the publisher waits for this client's socket (backpressure) or goes on
    const slow = this.slow
    if (!slow.readyForQueue(packet, waits)) { setImmediate(cb); return }
    slow.taken()
    let release: (() => void) | undefined
    if (slow.holdsPublisher(waits)) release = slow.hold(cb)
    else setImmediate(cb)
    // waiting in order (its publisher too, until it is written or this client is stuck: a client that reads but
    // does not acknowledge is stuck after `stuckAfterMs`)
    if (waits) this.window.wait(packet, release)
    else this.send(orig, qos0, packet, release)
  }

  /** Hands one message to aedes; `release` frees the publisher once it is written. */
  private send (orig: Deliver, qos0: boolean, packet: DeliverPacket, release: (() => void) | undefined): void {
    const slow = this.slow
    const filter = this.filter
    slow.sending()
    const prev = filter.current
    filter.current = packet
    const windowed = !qos0 && packet.qos > 0 && this.window.size > 0
    if (windowed) this.forwardedPacket = undefined
    try {
      orig(packet, () => {
        slow.written()
        release?.()
      })
    } finally {
      filter.current = prev
    }
    // aedes will write it (authorizeForward answered with a packet): it takes a slot, with its packet id
    if (windowed && this.forwardedPacket) this.window.takeForwarded(this.forwardedPacket)
  }

  forwarded (packet: DeliverPacket, result: DeliverPacket | null | undefined): void {
    this.forwardedPacket = result
    this.stored?.forwarded(packet, result)
  }

  /** One slot is free again: the stored queue first, then what waits, oldest first. */
  freed (id: number): void {
    this.window.free(id)
    this.stored?.freed(id)
    this.flush()
  }

  /** Slots are free: send what waits, oldest first. */
  private flush (): void {
    const w = this.window
    while (w.hasSlot()) {
      const next = w.nextWaiting()
      if (next === undefined) break
      if (this.client.closed) {
        next.release?.()
        for (const left of w.dropWaiting()) left?.release?.()
        return
      }
      this.send(this.origQoS, false, next.packet, next.release)
    }
    w.compactWaiting()
  }
}

/** One builder per options object (one per broker). */
const builders = new WeakMap<DeliveryOptions, DeliveryBuilder>()

function buildLayer (client: ClientInternals, origQoS: Deliver, orig0: Deliver, opts: DeliveryOptions, connect: ParsedPacket | undefined): DeliveryPair {
  const layer = new ClientDelivery(client, origQoS, opts, connect)
  return {
    deliverQoS: (packet, cb) => layer.deliver(origQoS, false, packet, cb),
    deliver0: (packet, cb) => layer.deliver(orig0, true, packet, cb)
  }
}

/**
 * The packet rule delivery needs among the client's packet rules (packet-rules.ts), first: it builds the delivery
 * functions before aedes handles a SUBSCRIBE or restores a session's subscriptions, which keep the function they read.
 */
export { buildBeforeSubscribing as deliveryPacketRule } from '../../aedes/internals.js'

/**
 * Installs Midge's delivery rules on a client aedes has just created, before it has parsed a byte; the client's
 * packet rules must start with `deliveryPacketRule`.
 */
export function installDelivery (aedesClient: Client, opts: DeliveryOptions): void {
  let build = builders.get(opts)
  // a new subscription's retained messages: many per turn (retained-batch.ts), then the rules above
  if (build === undefined) builders.set(opts, build = sendRetainedInBatches((client, origQoS, orig0, connect) => buildLayer(client, origQoS, orig0, opts, connect)))
  deliverThrough(aedesClient, build)
}
