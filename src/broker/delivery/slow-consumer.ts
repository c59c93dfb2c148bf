/**
 * Slow consumers. aedes holds the emitter's callback until the subscriber's socket drains, and reads the
 * publisher's next chunk only when every subscriber of the last one is done: a subscriber that stops reading stalls
 * its publishers (and so everyone they publish to) until `drainTimeout` (30 s) closes it. Midge keeps that
 * backpressure (made effective by read-loop.ts) while the subscriber makes progress, but once none of its writes has
 * completed for `stuckAfterMs` (1 s), or messages wait for its window (outgoing-window.ts) and it acknowledged
 * nothing for that long, it releases the publishers and stops holding them for that client until it catches up: all
 * handed to its socket written, or, stuck on its window, an acknowledgement. (Ending it on any completed write held
 * every publisher again for a second each time: the QoS 0 messages a client reads do not move its window, and a
 * non-reading socket still takes a write now and then as the kernel's buffers grow.)
 *
 * What waits for its socket is bounded: once it is stuck, beyond `max_inflight_messages + max_queued_messages`
 * messages (or, at any time, `max_queued_bytes` buffered), messages to that client are dropped, counted
 * (`stats.droppedSlowConsumer`) and logged once per episode. At most `max_queued_messages` wait for the window (as
 * in mosquitto; beyond, they are dropped the same way) once the client has acknowledged nothing for
 * `stuckAfterMs`: a subscriber that keeps acknowledging is not dropped because QoS 0 traffic delays its acks. For a
 * persistent session a dropped QoS 1/2 message stays in its stored queue and is sent when the client reconnects;
 * `drainTimeout` still closes a client that reads nothing for 30 s.
 */
import type { ClientInternals, DeliverPacket } from '../../aedes/internals.js'
import type { DeliveryOptions } from './options.js'
import type { WindowView } from './outgoing-window.js'

/** Clients none of whose writes (or acknowledgements) completed for `stuckAfterMs`: publishers no longer wait for them. */
const stuckClients = new WeakSet<object>()

/**
 * Publishers wait for this connected client (backpressure) rather than it being stuck. persistence/limits.ts then
 * does not apply `max_queued_messages` to its stored queue: what waits for it is bounded by its publishers' read
 * batches, and a subscriber that keeps acknowledging loses nothing however many publishers send to it.
 */
export function keepsUp (client: object): boolean {
  return !stuckClients.has(client)
}

export class SlowConsumer {
  /** Messages handed to aedes for this client whose write has not completed (waiting for the socket to drain). */
  pending = 0
  private dropping = false
  /** Emitter callbacks held for this client (the publishers wait for them), released when written or when stuck. */
  private held: Set<() => void> | undefined
  private lastProgress = Date.now()
  private stuck = false
  /** Stuck because messages wait for its window and it acknowledged nothing: only an acknowledgement ends it. */
  private stuckOnAcks = false
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly client: ClientInternals, private readonly opts: DeliveryOptions, private readonly window: WindowView) {}

  /**
   * Ready for the queue: false when the message is to be dropped (counted, logged once per episode). The count
   * limit applies to a stuck client only: while it makes progress its publishers wait for it (bounded by what they
   * may send per read), and a burst of one event-loop turn (200 publishers' reads, thousands of messages handed to
   * aedes before the first is written) is not a slow consumer. `waits`: it would wait for the window, where at most
   * `max_queued_messages` wait unless the client is acknowledging (one within `stuckAfterMs`): a subscriber that
   * keeps up is not dropped for its ack round trip.
   */
  readyForQueue (packet: DeliverPacket, waits: boolean): boolean {
    const opts = this.opts
    const full = (this.stuck && opts.maxPending > 0 && this.pending >= opts.maxPending) ||
      (opts.maxPendingBytes > 0 && (this.client.conn.writableLength ?? 0) >= opts.maxPendingBytes) ||
      (waits && opts.maxWaiting !== undefined && opts.maxWaiting > 0 && this.window.waitingCount() >= opts.maxWaiting &&
        Date.now() - this.window.lastAck >= opts.stuckAfterMs)
    if (!full) return true
    opts.stats.droppedSlowConsumer++
    if (!this.dropping) {
      this.dropping = true
      const client = this.client
      opts.log.warn({ clientId: client.id, topic: packet.topic, pending: this.pending, waiting: this.window.waitingCount() },
        `Outgoing messages are being dropped for client ${client.id ?? '?'}: it is not reading (max_inflight_messages + max_queued_messages reached).`)
    }
    return false
  }

  /**
   * Whether the publisher of a message taken for this client waits for it (until its socket took the message).
   * Not once it is stuck. Nor, for a message that waits for the window (`waits`), while this client's own reads
   * wait (a batch of its own in progress): its PUBACKs must be read to free the window, else a client receiving its
   * own messages, or two clients publishing to each other, would wait for acknowledgements nobody reads until one
   * counts as stuck (1 s), again and again; a chain of held publishers thus always ends at a client whose reads go
   * on. Nor while its stored queue is being sent: that can take seconds, and what waits behind it is stored too.
   * Past `max_queued_messages` waiting, it holds them anyway (stuck after a second).
   */
  holdsPublisher (waits: boolean): boolean {
    if (this.stuck) return false
    if (!waits) return true
    const w = this.window
    const max = this.opts.maxWaiting
    return (!w.replaying && this.client._parsingBatch <= 0) || (max !== undefined && max > 0 && w.waitingCount() >= max)
  }

  /** A message is taken for this client: if nothing was outstanding, its progress is counted from now. */
  taken (): void {
    if (this.pending === 0 && this.window.waitingCount() === 0) this.lastProgress = Date.now()
  }

  /** Holds the publisher's callback `cb`: the returned release calls it once (when written, stuck or closed). */
  hold (cb: () => void): () => void {
    const held = this.held ??= new Set()
    const release = (): void => { if (held.delete(release)) cb() }
    held.add(release)
    this.watch()
    return release
  }

  /** A message is handed to aedes for this client's socket. */
  sending (): void { this.pending++ }

  /**
   * aedes wrote a message to the socket. Once stuck, it is not stuck again until everything handed to its socket is
   * written (a write that completes while it still reads nothing, the kernel's buffers growing, would hold every
   * publisher again for `stuckAfterMs`), or, stuck on its window, until it acknowledges.
   */
  written (): void {
    this.pending--
    this.lastProgress = Date.now()
    if (this.stuck && !this.stuckOnAcks && this.pending === 0) this.unstick()
    if (this.dropping && this.pending === 0) this.dropping = false
  }

  /** It acknowledged a message in flight. */
  acked (at: number): void {
    this.lastProgress = at
    if (this.stuck) this.unstick()
  }

  private unstick (): void {
    this.stuck = this.stuckOnAcks = false
    stuckClients.delete(this.client)
  }

  private watch (): void {
    if (this.timer !== undefined) return
    this.timer = setTimeout(this.check, this.opts.stuckAfterMs)
    this.timer.unref()
  }

  private readonly check = (): void => {
    this.timer = undefined
    const waiting = this.window.waitingCount()
    if (this.pending === 0 && waiting === 0) return
    const now = Date.now()
    const idle = now - this.lastProgress
    const ackIdle = waiting > 0 ? now - this.window.lastAck : 0
    const after = this.opts.stuckAfterMs
    // messages wait for its window and no acknowledgement came for a while (the QoS 0 ones it reads meanwhile do
    // not count: they would keep its publishers waiting for a window that does not move), or not one write of this
    // client completed for a while: stop holding the publishers
    if (ackIdle >= after || idle >= after) {
      this.stuck = true
      this.stuckOnAcks = ackIdle >= after
      this.opts.stats.stuckEpisodes++
      stuckClients.add(this.client)
      if (this.held !== undefined) for (const release of [...this.held]) release()
      return
    }
    this.timer = setTimeout(this.check, after - Math.max(idle, ackIdle))
    this.timer.unref()
  }
}
