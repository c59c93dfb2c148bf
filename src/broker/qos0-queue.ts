/**
 * `queue_qos0_messages true`: messages that would reach an offline persistent session at QoS 0 are kept for it, as
 * mosquitto keeps them. aedes queues only what it would deliver at QoS 1 or 2: a QoS 0 publish skips its offline
 * queue, and its store indexes only QoS 1/2 subscriptions. So this second queue sits beside aedes' own:
 *  - when a persistent client disconnects, its subscriptions go into an index of offline filters (at start-up,
 *    those of every session the LevelDB store holds);
 *  - every routed message that matches an offline client's filters at delivery QoS 0 (the lower of the publish's
 *    and the best matching subscription's QoS) is queued for it, within `max_queued_messages` /
 *    `max_queued_bytes` counted together with its stored QoS 1/2 queue;
 *  - when the client is back (`clientReady`: aedes has sent its stored queue) they go out through `client.publish`,
 *    the path of every delivery (ACL read check, duplicate filter, the client's limits), in arrival order; a v5
 *    message whose expiry ran out is dropped, the others carry their remaining expiry;
 *  - a clean start, or a session that expires or is wiped, drops its queue.
 * Ordering: MQTT orders messages per topic and QoS; a returning client gets its stored QoS 1/2 messages first, then
 * these (mosquitto interleaves them in arrival order). The queue is held in memory, as QoS 0 is "at most once":
 * a restart keeps the sessions (LevelDB) but not these messages; mosquitto loses them too unless it reached an
 * autosave before it stopped.
 */
import type { Aedes, Client, PublishPacket } from 'aedes'
import type { ClassicLevel } from 'classic-level'
import type { Logger } from '../logging/logger.js'
import type { PersistenceStats } from '../persistence/limits.js'
import { connectedClients, subscriptionsOf, type HeldSubscription } from '../aedes/internals.js'
import { TopicEmitter, type Listener } from './emitter.js'
import { topicMatches } from '../mqtt/topic-match.js'

interface StoredSubscription extends HeldSubscription { topic: string, subscriptionIdentifier?: number }

interface Queued {
  packet: PublishPacket & { properties?: Record<string, unknown> }
  /** v5: when the message expires (ms since the epoch), if it does */
  expiresAt?: number
  bytes: number
}

interface Offline {
  subs: StoredSubscription[]
  queue: Queued[]
  bytes: number
  /** the index entry standing for this client (one listener for all of its filters) */
  listener: Listener
  /** a drop has been logged since the queue last had room */
  warned: boolean
}

export interface Qos0QueueDeps {
  /** `max_queued_messages` / `max_queued_bytes`; 0 = no limit */
  maxMessages: number
  maxBytes: number
  /** What the store already holds for this client (its QoS 1/2 queue): the limits count both. */
  storedFor: (clientId: string) => { count: number, bytes: number }
  stats: PersistenceStats
  log: Logger
}

/** The store calls Midge needs to read sessions back at start-up. */
interface SessionStore { subscriptionsByClient (client: { id: string }): Promise<StoredSubscription[]> }

const SUBSCRIPTIONS = 'subscriptions:'

export class Qos0Queue {
  private readonly offline = new Map<string, Offline>()
  private readonly owners = new Map<Listener, string>()
  private readonly index = new TopicEmitter()
  /** The subscriptions of each connected persistent client. */
  private readonly live = new Map<string, Record<string, HeldSubscription>>()
  /** Queues of clients that are back, kept from `client` until `clientReady` (after aedes' own queue). */
  private readonly waiting = new Map<string, Queued[]>()

  constructor (private readonly deps: Qos0QueueDeps) {}

  /** Sessions the LevelDB store holds from the last run: every one of them is offline now. */
  async load (db: ClassicLevel<string, Buffer>, store: SessionStore): Promise<void> {
    const ids = new Set<string>()
    for await (const k of db.keys({ gte: SUBSCRIPTIONS, lt: 'subscriptions;' })) {
      const end = k.indexOf(':', SUBSCRIPTIONS.length)
      ids.add(decodeURIComponent(k.slice(SUBSCRIPTIONS.length, end < 0 ? undefined : end)))
    }
    for (const id of ids) this.goOffline(id, await store.subscriptionsByClient({ id }))
  }

  attach (aedes: Aedes): void {
    // aedes empties a closing client's subscription table before `clientDisconnect`: keep a copy while it is connected
    const keep = (c: Client): void => { if (!c.clean && c.id !== null) this.live.set(c.id, { ...subscriptionsOf(c) }) }
    aedes.on('clientReady', keep)
    aedes.on('subscribe', (_subs, c: Client) => keep(c))
    aedes.on('unsubscribe', (_topics, c: Client) => keep(c))
    aedes.on('clientDisconnect', (c: Client) => {
      const held = this.live.get(c.id)
      this.live.delete(c.id)
      // a session taken over by a new connection is not offline
      if (c.clean || held === undefined || connectedClients(aedes)[c.id] !== undefined) return
      const subs: StoredSubscription[] = []
      for (const topic in held) subs.push({ topic, ...held[topic]! })
      this.goOffline(c.id, subs)
    })
    // before aedes sends anything to the returning client: nothing may be queued for it once it is back
    aedes.on('client', (c: Client) => this.comeBack(c))
    // a clean start (or a session that was gone) gets no session back, and no queue either
    aedes.on('connackSent', (packet: { sessionPresent?: boolean }, c: Client) => { if (packet.sessionPresent !== true) this.waiting.delete(c.id) })
    aedes.on('clientReady', (c: Client) => this.flush(c))
    aedes.on('sessionExpired', (c: Client) => this.forget(c.id))
    aedes.on('sessionLimitReached', (c: Client) => this.forget(c.id))
    aedes.on('publish', (packet: PublishPacket) => this.route(packet))
  }

  /** A session removed by the store's expiry (persistent_client_expiration, a v5 interval across a restart). */
  forget (clientId: string): void {
    const o = this.offline.get(clientId)
    if (o === undefined) return
    this.offline.delete(clientId)
    this.unindex(o)
  }

  /** Messages waiting for offline clients (for tests and `$SYS`). */
  size (): number {
    let n = 0
    for (const o of this.offline.values()) n += o.queue.length
    return n
  }

  private goOffline (clientId: string, subs: StoredSubscription[]): void {
    this.forget(clientId)
    if (subs.length === 0) return
    const o: Offline = { subs, queue: [], bytes: 0, listener: (_m, done) => done(), warned: false }
    this.offline.set(clientId, o)
    this.owners.set(o.listener, clientId)
    for (const s of subs) this.index.on(s.topic, o.listener)
  }

  private unindex (o: Offline): void {
    this.owners.delete(o.listener)
    for (const s of o.subs) this.index.removeListener(s.topic, o.listener)
  }

  /** Takes the queue aside for `clientReady`; `connackSent` drops it if the session did not continue. */
  private comeBack (c: Client): void {
    const o = this.offline.get(c.id)
    if (o === undefined) return
    this.offline.delete(c.id)
    this.unindex(o)
    if (o.queue.length > 0) this.waiting.set(c.id, o.queue)
  }

  private flush (c: Client): void {
    const queue = this.waiting.get(c.id)
    if (queue === undefined) return
    this.waiting.delete(c.id)
    const now = Date.now()
    for (const q of queue) {
      if (q.expiresAt !== undefined) {
        if (q.expiresAt <= now) continue
        q.packet.properties = { ...q.packet.properties, messageExpiryInterval: Math.ceil((q.expiresAt - now) / 1000) }
      }
      c.publish(q.packet, (err?: Error) => {
        if (err) this.deps.log.debug({ clientId: c.id, err: err.message }, 'a queued QoS 0 message was not sent')
      })
    }
  }

  private route (packet: PublishPacket & { properties?: Record<string, unknown>, messageExpiry?: number }): void {
    if (this.offline.size === 0) return
    const listeners = this.index.match(packet.topic)
    if (listeners.length === 0) return
    const seen = new Set<string>()
    for (const l of listeners) {
      const id = this.owners.get(l)
      if (id === undefined || seen.has(id)) continue
      seen.add(id)
      const o = this.offline.get(id)
      if (o !== undefined) this.offer(id, o, packet)
    }
  }

  private offer (clientId: string, o: Offline, packet: PublishPacket & { properties?: Record<string, unknown>, messageExpiry?: number }): void {
    let best = -1
    let retainAsPublished = false
    const ids: number[] = []
    for (const s of o.subs) {
      // the index ignores MQTT's `$` rule: a filter starting with a wildcard does not match `$SYS/...`
      if (!topicMatches(s.topic, packet.topic)) continue
      if (s.qos > best) best = s.qos
      if (s.rap === true) retainAsPublished = true
      // held by a connected client as `si`, stored as `subscriptionIdentifier`
      const id = s.si ?? s.subscriptionIdentifier
      if (id !== undefined) ids.push(id)
    }
    // delivered at QoS 1 or 2: aedes' own offline queue holds it
    if (best < 0 || Math.min(best, packet.qos) > 0) return
    const bytes = packet.payload.length
    const { maxMessages, maxBytes, storedFor, stats, log } = this.deps
    const stored = storedFor(clientId)
    if ((maxMessages > 0 && stored.count + o.queue.length >= maxMessages) || (maxBytes > 0 && stored.bytes + o.bytes + bytes > maxBytes)) {
      stats.droppedQueueFull++
      if (!o.warned) log.warn({ clientId }, `Outgoing messages are being dropped for client ${clientId}.`)
      o.warned = true
      return
    }
    o.warned = false
    const properties = packet.properties === undefined && ids.length === 0
      ? undefined
      : { ...packet.properties, ...(ids.length > 0 ? { subscriptionIdentifier: ids.length === 1 ? ids[0] : ids } : {}) }
    const queued: Queued = {
      packet: {
        cmd: 'publish',
        topic: packet.topic,
        payload: packet.payload,
        qos: 0,
        retain: retainAsPublished && packet.retain,
        dup: false,
        ...(properties !== undefined ? { properties } : {})
      } as PublishPacket & { properties?: Record<string, unknown> },
      bytes
    }
    const expiry = packet.properties?.messageExpiryInterval
    if (packet.messageExpiry !== undefined) queued.expiresAt = packet.messageExpiry
    else if (typeof expiry === 'number' && expiry > 0) queued.expiresAt = Date.now() + expiry * 1000
    o.queue.push(queued)
    o.bytes += bytes
  }
}
