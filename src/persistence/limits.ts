/**
 * `max_queued_messages` / `max_queued_bytes` for the messages stored for persistent sessions.
 *
 * aedes-persistence has no cap: a persistent session that never comes back grows its offline queue without limit.
 * The store aedes is given (store.ts, its queue-limits step) asks this accounting before each message is queued
 * and counts, per client id, the QoS 1/2 messages queued for it (`outgoingEnqueue(Combi)` adds,
 * `outgoingClearMessageId` removes when PUBACK/PUBCOMP arrives). Beyond `max_queued_messages` messages for an offline client, as mosquitto
 * 2.0.11 (checked: 30 QoS 1 publishes to an offline session with `max_queued_messages 10`, it receives m1..m10), or
 * `max_queued_messages + max_inflight_messages` for a connected one that is stuck (its in-flight messages are stored
 * too), or `max_queued_bytes`), a new message is not queued for that client: the drop is counted in `stats.droppedQueueFull`
 * and logged once per client until its queue has room again, as mosquitto does ("Outgoing messages are being
 * dropped for client ...").
 * A connected client that is not stuck (broker/delivery/slow-consumer.ts: a write or acknowledgement within a second) has no
 * such limit: its publishers wait for it, so what waits for it is bounded by their read batches (16 packets per
 * connection). Before, 5 publishers of 400 QoS 1 messages each to one persistent subscriber with the default
 * window lost messages at `max_queued_messages 50` (test: 41-throughput) although the subscriber kept up.
 */
import type { ClassicLevel } from 'classic-level'
import type { Logger } from '../logging/logger.js'
import { OUTGOING, clientOfKey, range } from './level-layout.js'

export interface PersistenceStats {
  /** Messages not queued for a client because its queue was full (max_queued_messages / max_queued_bytes). */
  droppedQueueFull: number
  /** Live deliveries dropped because the subscriber did not read (slow consumer). */
  droppedSlowConsumer: number
  /** Times a connected client counted as stuck, so that publishers stopped waiting for it (broker/delivery/slow-consumer.ts). */
  stuckEpisodes: number
  /** Persistent sessions removed by persistent_client_expiration. */
  expiredClients: number
  /** QoS 1 publishes journalled before their PUBACK. */
  journalled: number
  /** Journal entries published again at start-up. */
  replayed: number
}

export function newStats (): PersistenceStats {
  return { droppedQueueFull: 0, droppedSlowConsumer: 0, stuckEpisodes: 0, expiredClients: 0, journalled: 0, replayed: 0 }
}

export interface QueueLimits {
  /** Messages queued per client (`max_queued_messages`); 0 = no limit. */
  maxMessages: number
  /** Added to maxMessages while the client is connected: its in-flight messages are in the store too. */
  maxInflight: number
  /** Payload bytes per client; 0 = no limit. */
  maxBytes: number
}

interface Queue { count: number, bytes: number, warned: boolean }

export class QueueAccounting {
  private readonly queues = new Map<string, Queue>()
  /** Messages refused for clients that are online, by `brokerId:counter`: their live delivery must be skipped too. */
  private readonly refused = new Map<string, Set<string>>()
  /** Set by the broker: is a client with this id connected? */
  isOnline: (clientId: string) => boolean = () => false
  /** Set by the broker: is a client with this id connected, and do its publishers wait for it (not stuck)? */
  keepsUp: (clientId: string) => boolean = () => false

  constructor (private readonly limits: QueueLimits, private readonly stats: PersistenceStats, private readonly log: Logger) {}

  /** Counts what the store already holds (LevelDB: the queues of the previous run). */
  async load (db: ClassicLevel<string, Buffer>): Promise<void> {
    for await (const [key, value] of db.iterator(range(OUTGOING))) {
      // the payload is inside the msgpack value: its size is close enough to the value's for a byte budget
      this.add(clientOfKey(OUTGOING, key), value.length)
    }
  }

  queued (clientId: string): { count: number, bytes: number } {
    const q = this.queues.get(clientId)
    return { count: q?.count ?? 0, bytes: q?.bytes ?? 0 }
  }

  /** Forgets every count (before `load`). */
  reset (): void {
    this.queues.clear()
    this.refused.clear()
  }

  forget (clientId: string): void {
    this.queues.delete(clientId)
    this.refused.delete(clientId)
  }

  /**
   * True (once) if the store refused this message for this client. aedes would then fail the live delivery to it
   * (`outgoingUpdate`: no such packet) and close the connection; delivery.ts skips it instead.
   */
  wasRefused (clientId: string, packet: { brokerId?: string, brokerCounter?: number }): boolean {
    const set = this.refused.get(clientId)
    if (set === undefined) return false
    const hit = set.delete(`${packet.brokerId}:${packet.brokerCounter}`)
    if (set.size === 0) this.refused.delete(clientId)
    return hit
  }

  /** The message limit for this client now: its in-flight messages are in the store too while it is connected. */
  private maxMessagesFor (clientId: string): number {
    return this.limits.maxMessages > 0 ? this.limits.maxMessages + (this.isOnline(clientId) ? this.limits.maxInflight : 0) : 0
  }

  /** True if one more message of `bytes` would fit in this client's queue (nothing counted). */
  hasRoom (clientId: string, bytes: number): boolean {
    const q = this.queues.get(clientId)
    if (q === undefined) return true
    // its publishers wait for it (broker/delivery/slow-consumer.ts): what waits is bounded by their read batches
    if (this.keepsUp(clientId)) return true
    const maxMessages = this.maxMessagesFor(clientId)
    const { maxBytes } = this.limits
    return !((maxMessages > 0 && q.count >= maxMessages) || (maxBytes > 0 && q.bytes + bytes > maxBytes))
  }

  /** True if one more message of `bytes` fits; counts and logs the drop otherwise. */
  admit (clientId: string, bytes: number, topic: string, packet?: { brokerId?: string, brokerCounter?: number }): boolean {
    if (this.hasRoom(clientId, bytes)) return true
    const q = this.queues.get(clientId)!
    const maxMessages = this.maxMessagesFor(clientId)
    const { maxBytes } = this.limits
    this.stats.droppedQueueFull++
    if (packet && this.isOnline(clientId)) {
      let set = this.refused.get(clientId)
      if (set === undefined) { set = new Set(); this.refused.set(clientId, set) }
      if (set.size < 100_000) set.add(`${packet.brokerId}:${packet.brokerCounter}`)
    }
    if (!q.warned) {
      q.warned = true
      this.log.warn({ clientId, topic, queued: q.count, queuedBytes: q.bytes },
        `Outgoing messages are being dropped for client ${clientId}: its queue is full (max_queued_messages ${maxMessages}, max_queued_bytes ${maxBytes}).`)
    }
    return false
  }

  add (clientId: string, bytes: number): void {
    let q = this.queues.get(clientId)
    if (q === undefined) { q = { count: 0, bytes: 0, warned: false }; this.queues.set(clientId, q) }
    q.count++
    q.bytes += bytes
  }

  remove (clientId: string, bytes: number): void {
    const q = this.queues.get(clientId)
    if (q === undefined) return
    q.count = Math.max(0, q.count - 1)
    q.bytes = Math.max(0, q.bytes - bytes)
    // log again the next time it fills up
    if (q.warned && (this.limits.maxMessages === 0 || q.count < this.limits.maxMessages)) q.warned = false
    if (q.count === 0) this.queues.delete(clientId)
  }
}
