/**
 * Everything Midge adds around aedes' persistence to keep its promise (what was acknowledged survives a
 * crash, a restart or a full queue), in one object the Broker wires in:
 *   - `persistence`: the backend's store as Midge's own steps read it (LevelDB: behind the session index), and
 *     `accounting`, the queue limits; aedes gets both inside MidgeStore (store.ts), which the Broker builds;
 *   - `brokerId`: an id that sorts after every earlier start's (level.ts);
 *   - `authorizePublish` / `published`: the QoS 1 journal (journal.ts);
 *   - `attach(aedes)`: replays the journal, restores delayed wills (will-delay.ts) and starts session expiry, before
 *     any listener opens;
 */
import type { Aedes, Client, PublishPacket } from 'aedes'
import type { Config } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import type { PersistenceBackend } from './types.js'
import { brokerInternals, clientInternals, connectedClients } from '../aedes/internals.js'
import { PublishJournal, type JournalEntry, type JournalPacket } from './journal.js'
import type { JournalStore } from './types.js'
import { QueueAccounting, newStats, type PersistenceStats } from './limits.js'
import { SessionExpiry } from './expiry.js'
import { DelayedWills, type WillStore } from './will-delay.js'
import { skipEmptySessions } from './session-index.js'
import type { StoreBackend, StorePacket } from './store.js'

type Cb = (err?: Error | null) => void
type AuthorizePublish = (client: Client | null, packet: PublishPacket, cb: Cb) => void

/** True if retained message a (brokerId, counter) was published after b. Broker ids of a LevelDB store sort by start. */
function newer (a: { brokerId?: string, brokerCounter?: number }, b: { brokerId?: string, brokerCounter?: number }): boolean {
  const ia = a.brokerId ?? ''
  const ib = b.brokerId ?? ''
  if (ia !== ib) return ia > ib
  return (a.brokerCounter ?? 0) > (b.brokerCounter ?? 0)
}

export class Durability {
  readonly stats: PersistenceStats = newStats()
  /**
   * The backend's aedes-persistence object, without MidgeStore's steps: what Midge itself reads and writes
   * (expiry, delayed wills, the journal's replay checks) needs neither queue limits nor DUP marking.
   */
  readonly persistence: StoreBackend
  readonly accounting: QueueAccounting
  readonly journal: JournalStore | undefined
  readonly expiry: SessionExpiry | undefined
  /** MQTT 5 Will Delay Interval kept across restarts (LevelDB). */
  readonly wills: DelayedWills | undefined
  private aedes: Aedes | undefined
  /** A message on this topic may be queued for a persistent shared-subscription member (broker/shared-subscriptions.ts). */
  queuesShared: ((topic: string) => boolean) | undefined

  constructor (readonly backend: PersistenceBackend, private readonly config: Config, private readonly log: Logger) {
    const l = config.limits
    this.accounting = new QueueAccounting({
      maxMessages: l.maxQueuedMessages,
      maxInflight: l.maxInflightMessages,
      maxBytes: l.maxQueuedBytes
    }, this.stats, log)
    // LevelDB: a session with nothing stored costs no store read (session-index.ts)
    const raw = backend.aedes as StoreBackend
    this.persistence = backend.db ? skipEmptySessions(raw, backend.db).persistence : raw
    // the Redis backend brings its own journal (cluster/journal.ts)
    if (backend.journal) this.journal = backend.journal
    if (backend.db) {
      this.journal = new PublishJournal(backend.db, log)
      // also without persistent_client_expiration: a v5 session's own expiry interval must outlive a restart
      this.expiry = new SessionExpiry({
        db: backend.db,
        persistence: this.persistence,
        isOnline: id => this.isOnline(id),
        expirationMs: config.persistence.clientExpirationMs,
        stats: this.stats,
        accounting: this.accounting,
        log
      })
      this.wills = new DelayedWills(backend.db, this.persistence as WillStore, log)
    }
    this.accounting.isOnline = id => this.isOnline(id)
  }

  get brokerId (): string | undefined { return this.backend.brokerId }

  private isOnline (id: string): boolean {
    const clients = this.aedes ? connectedClients(this.aedes) : undefined
    return clients !== undefined && clients[id] !== undefined
  }

  /**
   * Wraps Midge's authorizePublish, which aedes awaits before it acknowledges (PUBACK) or stores (QoS 2) a publish:
   *  - every allowed QoS 1/2 publish gets its aedes brokerId/brokerCounter here, in arrival order. aedes would assign
   *    them when it starts publishing, after its own store writes, which LevelDB completes in any order: the offline
   *    queue (sorted by counter) then swaps messages of one publisher (seen: b-216 before b-215 in 15-persist);
   *  - a QoS 1 publish that must survive a crash is journalled before the PUBACK (journal.ts).
   */
  authorizePublish (inner: AuthorizePublish): AuthorizePublish {
    const journal = this.journal
    return (client, packet, cb) => {
      inner(client, packet, (err) => {
        const a = this.aedes ? brokerInternals(this.aedes) : undefined
        if (err || client === null || packet.qos === 0 || a === undefined || packet.topic.startsWith('$')) { cb(err); return }
        const p = packet as PublishPacket & { brokerId?: string, brokerCounter?: number, messageExpiry?: number, properties?: { messageExpiryInterval?: number } }
        p.brokerId = a.id
        p.brokerCounter = ++a.counter
        // the expiry runs from arrival (aedes would stamp it when it routes the message, after the journal write),
        // and the journal keeps it absolute so that time spent stopped counts
        const expiry = p.properties?.messageExpiryInterval
        if (expiry !== undefined && expiry > 0 && p.messageExpiry === undefined) p.messageExpiry = Date.now() + expiry * 1000
        const c = clientInternals(client)
        // a will is kept in the store by aedes until it is published; nothing to journal
        if (packet.qos !== 1 || journal === undefined || c.closed === true || c.will === packet) { cb(null); return }
        this.needsJournal(packet).then(need => {
          if (!need) { cb(null); return }
          this.stats.journalled++
          return journal.record(packet as unknown as JournalPacket).then(() => {
            cb(null)
            // aedes writes the PUBACK synchronously in that callback and publishes only if the client is still
            // connected: if it is gone, nothing was acknowledged or published, and the entry must not be replayed
            if (c.connected !== true && c.connecting !== true) journal.complete(packet)
          })
        }).catch((e: Error) => cb(e))
      })
    }
  }

  /** Whether a persistent session, connected or not, subscribes to the topic. */
  /**
   * The persistent sessions a message of `bytes` on `topic` would be queued for: none, all of them with a full
   * queue (`max_queued_messages` / `max_queued_bytes`), or at least one with room.
   */
  async storedSubscribers (topic: string, bytes: number): Promise<'none' | 'full' | 'room'> {
    const subs = await this.persistence.subscriptionsByTopic(topic)
    if (subs.length === 0) return 'none'
    return subs.some(s => this.accounting.hasRoom(s.clientId, bytes)) ? 'room' : 'full'
  }

  /** Retained, or matching a persistent session's QoS 1/2 subscription: otherwise nothing of it outlives the process. */
  private async needsJournal (packet: PublishPacket): Promise<boolean> {
    if (packet.retain || this.queuesShared?.(packet.topic) === true) return true
    const subs = await this.persistence.subscriptionsByTopic(packet.topic)
    return subs.some(s => (s.qos ?? 0) > 0)
  }

  /** aedes' `published` hook: runs after the retained store and the offline queues are written. */
  readonly published = (packet: object, _client: Client | null, cb: Cb): void => {
    this.journal?.complete(packet)
    cb(null)
  }

  /**
   * After `Aedes.createBroker`, before any listener: replays the journal, counts stored queues, starts expiry.
   * Counted after the replay: a replayed message whose queue write had completed is written again under the same
   * key, and counted before it was counted twice (15-persist-limits, under load: 6 drops instead of 3).
   */
  async attach (aedes: Aedes): Promise<void> {
    this.aedes = aedes
    const db = this.backend.db
    if (this.journal) await this.replay(aedes, this.journal)
    if (db) {
      this.accounting.reset()
      await this.accounting.load(db)
    }
    // wills whose delay ended while the broker was stopped go out before the expiry sweep can remove their sessions
    await this.wills?.attach(aedes)
    if (this.expiry) {
      const expiry = this.expiry
      const touch = (c: Client): void => {
        if (c.clean) return
        expiry.touch(c.id, Date.now(), c.version === 5 ? c.sessionExpiryInterval : undefined)
          .catch((err: Error) => this.log.warn({ clientId: c.id, err: err.message }, 'could not record when the session was last seen'))
      }
      aedes.on('client', touch)
      aedes.on('clientDisconnect', touch)
      expiry.start()
    }
  }

  /** Also called periodically in cluster mode: the Redis journal then yields the entries of nodes that are gone. */
  async replay (aedes: Aedes, journal: JournalStore): Promise<void> {
    const entries = await journal.pending()
    if (entries.length === 0) return
    this.log.warn({ count: entries.length }, `Replaying ${entries.length} acknowledged QoS 1 message(s) from the journal (the broker stopped before storing them).`)
    const p = this.persistence
    for (const e of entries) {
      // a v5 message whose expiry ran out while the broker was stopped is not delivered [MQTT-3.3.2-5]
      if (e.messageExpiry !== undefined && e.messageExpiry <= Date.now()) {
        journal.remove(e.key)
        continue
      }
      const retain = e.retain && !(await this.retainedIsNewer(p, e))
      await new Promise<void>((resolve, reject) => {
        aedes.publish({
          cmd: 'publish',
          topic: e.topic,
          payload: e.payload,
          qos: e.qos,
          retain,
          dup: false,
          brokerId: e.brokerId,
          brokerCounter: e.brokerCounter,
          ...(e.properties !== undefined ? { properties: e.properties } : {}),
          ...(e.messageExpiry !== undefined ? { messageExpiry: e.messageExpiry } : {})
        } as unknown as PublishPacket, (err?: Error) => err ? reject(err) : resolve())
      })
      journal.remove(e.key)
      this.stats.replayed++
    }
    await journal.flush()
  }

  /** A retained message published after this journal entry is already stored for its topic: do not overwrite it. */
  private async retainedIsNewer (p: StoreBackend, e: JournalEntry): Promise<boolean> {
    for await (const r of p.createRetainedStream(e.topic) as AsyncIterable<StorePacket>) {
      if (newer(r, e)) return true
    }
    return false
  }

  /** Before the store closes: stop sweeping, write the last journal deletions. */
  async close (): Promise<void> {
    await this.expiry?.stop()
    await this.wills?.close()
    await this.journal?.settled?.(1_500)
    await this.journal?.flush()
  }
}
