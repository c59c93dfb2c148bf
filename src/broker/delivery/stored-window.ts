/**
 * The stored queue of a persistent session shares the outgoing window. aedes sends it on reconnect itself
 * (lib/handlers/connect.js `emptyQueue`: `persistence.outgoingStream(client)` piped to `write()`, after CONNACK, not
 * through deliverQoS), all of it at once. MidgeStore's DUP marking (persistence/store.ts) passes that stream through `admitStored`: a stored message
 * goes on to aedes only when it has a slot (an already-sent one keeps its stored packet id and DUP=1, a never-sent
 * one gets the next free id), and the same PUBACK/PUBCOMP listener frees its slot. Until the whole stored queue is
 * written (aedes' `connected` event, emitted when `emptyQueue` ends), live QoS 1/2 deliveries wait behind it, so
 * they go out after the stored ones, as in mosquitto (QoS 0 ones do not wait). A clean session's stale queue (aedes
 * clears it message by message, writing nothing) takes no slot.
 *
 * aedes asks authorizeForward before it writes a stored message: refused, the message is not written and its slot
 * is free; lowered to the subscription's QoS (aedes stores the publish QoS, aedes-hooks clampQos lowers it), its
 * slot waits for that QoS's acknowledgement. The stored messages sent are remembered by the duplicate filter: a live
 * copy of one (enqueued before the store was read) is not sent twice. If the connection closes mid-way, the stream
 * ends with an error (as aedes' own write error would end it); what was not sent stays in the store, which aedes
 * only clears on acknowledgement. Measured with `max_inflight_messages 5` and 50 queued (test: 16-inflight-replay):
 * 5 before any acknowledgement, then one per PUBACK/PUBCOMP; mosquitto 2.0.11 also sends 5 first, then 5 more per
 * acknowledgement (up to 9 in flight).
 */
import { buildDelivery, type ClientInternals, type DeliverPacket } from '../../aedes/internals.js'
import type { SeenKeys } from './duplicate-filter.js'
import type { OutgoingWindow } from './outgoing-window.js'

/** A packet of a persistent session's stored queue, as the store's outgoingStream yields it. */
export interface StoredPacket { cmd?: string, qos?: number, messageId?: number, brokerId?: string, brokerCounter?: number }

/** Frees a slot of the window and sends what waits for it. */
export interface SlotOwner { freed (id: number): void }

const storedWindows = new WeakMap<object, StoredWindow>()

/**
 * Calls `go` once the stored packet may be handed to aedes: at once when it needs no slot (no window, QoS 0, an
 * identifier already in flight), else when the client's window has a slot, which it then holds (a never-sent packet
 * gets its packet id here). `go(err)` if the connection closes first.
 */
export function admitStored (client: unknown, packet: StoredPacket, go: (err?: Error) => void): void {
  if (typeof client !== 'object' || client === null) { go(); return }
  buildDelivery(client)
  const w = storedWindows.get(client)
  if (w === undefined) go()
  else w.admit(packet, go)
}

export class StoredWindow {
  /** Stored messages in flight, by packet id. */
  private ids: Map<number, StoredPacket> | undefined
  /** The stored packet waiting for a slot (aedes' pipe asks for the next one only when this one went on). */
  private waiting: { packet: StoredPacket, go: (err?: Error) => void } | undefined

  constructor (private readonly client: ClientInternals, private readonly window: OutgoingWindow,
    private readonly seen: SeenKeys, private readonly owner: SlotOwner) {
    storedWindows.set(client, this)
  }

  admit (packet: StoredPacket, go: (err?: Error) => void): void {
    if (this.client.closed) { go(new Error('connection closed')); return }
    // a clean session's stale queue: aedes clears each message instead of writing it
    if (this.client.clean || this.admitNow(packet)) { go(); return }
    this.waiting = { packet, go }
  }

  /** Takes a slot for the stored packet if it needs one and one is free; false if it must wait. */
  private admitNow (packet: StoredPacket): boolean {
    const qos = packet.cmd === 'pubrel' ? 2 : packet.qos ?? 0
    const w = this.window
    if (qos === 0 || (packet.messageId && w.isInFlight(packet.messageId))) return true
    if (w.inflight >= w.slots()) return false
    // a never-sent message: QoSPacket keeps the id it has, and aedes stores it with outgoingUpdate
    const id = packet.messageId || (packet.messageId = w.nextId())
    w.take(id, qos)
    ;(this.ids ??= new Map()).set(id, packet)
    if (packet.cmd !== 'pubrel' && packet.brokerId) this.seen.remember(packet.brokerId, packet.brokerCounter ?? 0)
    return true
  }

  /** A slot is free: the stored packet waiting for one goes first. */
  freed (id: number): void {
    this.ids?.delete(id)
    const waiting = this.waiting
    if (waiting !== undefined && this.admitNow(waiting.packet)) {
      this.waiting = undefined
      waiting.go()
    }
  }

  /**
   * aedes asks authorizeForward before it writes a stored message (emptyQueueFilter): refused, it clears the
   * message instead (the slot is free); lowered to the subscription's QoS (aedes-hooks clampQos), it is
   * acknowledged as such.
   */
  forwarded (packet: DeliverPacket, result: DeliverPacket | null | undefined): void {
    const ids = this.ids
    if (ids === undefined || ids.size === 0 || packet.messageId === undefined) return
    const s = ids.get(packet.messageId)
    if (s === undefined || s.brokerId !== packet.brokerId || s.brokerCounter !== packet.brokerCounter) return
    if (!result || result.qos === 0) this.owner.freed(packet.messageId)
    else this.window.retake(packet.messageId, result.qos)
  }

  /** The connection is gone: the stored packet waiting ends aedes' stream with an error (it stays in the store). */
  close (): void {
    const waiting = this.waiting
    this.waiting = undefined
    waiting?.go(new Error('connection closed'))
  }
}
