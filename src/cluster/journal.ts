/**
 * The QoS 1 journal of a cluster node, in Redis (the LevelDB journal is persistence/journal.ts).
 *
 * aedes writes PUBACK before it stores a QoS 1 message in the offline queues, whatever the store: with
 * aedes-persistence-redis too, a node killed right after a PUBACK loses a message the publisher was told is safe.
 * Durability (persistence/durability.ts) journals such a publish before the PUBACK and completes it once aedes has
 * stored it; this class keeps that journal in Redis, where the other nodes can read it:
 *
 *   midge:journal:<brokerId>    hash  seq -> entry            the journal of one running node (one aedes broker id)
 *   midge:journals              set   "<owner>|<hash key>"    every journal hash and the node that owns it
 *   midge:alive:<brokerId>      string, expires after LEASE_MS, renewed every RENEW_MS while the node runs
 *
 * A journal whose owner's lease has expired (the node was killed or lost Redis for good) is claimed by the first
 * node that sees it (RENAME is atomic: one node wins) and published again by it, with the original broker id and
 * counter, so that the offline-queue keys are the same ones (see journal.ts). A message whose queue write had
 * completed may then be queued twice: QoS 1 is "at least once".
 */
import type { Logger } from '../logging/logger.js'
import { encode, decode, type JournalEntry, type JournalPacket } from '../persistence/journal.js'
import type { RedisClient } from './redis.js'

export const LEASE_MS = 5_000
const RENEW_MS = 1_000
const SET_KEY = 'midge:journals'

export class RedisJournal {
  private seq = 0
  private readonly keys = new WeakMap<object, string>()
  private readonly inflight = new Set<Promise<unknown>>()
  private hash: string
  private generation = 0
  private renewTimer: NodeJS.Timeout | undefined
  private claims = 0
  /** Journal writes done (tests, metrics). */
  written = 0

  constructor (private readonly redis: RedisClient, private readonly brokerId: string, private readonly log: Logger) {
    this.hash = `midge:journal:${brokerId}`
  }

  /** Takes the lease and registers this node's journal; renews the lease until close(). */
  async start (): Promise<void> {
    await this.renew()
    await this.redis.sadd(SET_KEY, `${this.brokerId}|${this.hash}`)
    this.renewTimer = setInterval(() => { void this.keepLease() }, RENEW_MS).unref()
  }

  private async renew (): Promise<void> {
    await this.redis.set(`midge:alive:${this.brokerId}`, '1', 'PX', LEASE_MS)
  }

  /** Set while lease renewals fail: the first failure and the recovery are logged, not every second between. */
  private leaseFailing = false

  /**
   * A lease not renewed for LEASE_MS lets another node claim this live node's journal and publish its entries
   * again (duplicates), and drops the journal from the set (if this node then dies, nobody replays it). So a
   * failure is logged, and once renewal works again the journal is registered again (SADD is idempotent).
   */
  private async keepLease (): Promise<void> {
    try {
      await this.renew()
    } catch (err) {
      if (!this.leaseFailing) {
        this.leaseFailing = true
        this.log.warn({ err: (err as Error).message }, `cluster: could not renew this node's lease; after ${LEASE_MS / 1000} s other nodes may replay its journal`)
      }
      return
    }
    if (!this.leaseFailing) return
    this.leaseFailing = false
    try {
      await this.redis.sadd(SET_KEY, `${this.brokerId}|${this.hash}`)
      this.log.info('cluster: lease renewed again')
    } catch (err) {
      // registration is retried with the next renewal
      this.leaseFailing = true
      this.log.warn({ err: (err as Error).message }, 'cluster: could not register this node\'s journal again')
    }
  }

  /** Set when Redis came back after an outage: the next pending() also reclaims this node's own journal. */
  reclaimNeeded = false

  /**
   * Entries of journals whose node is gone, claimed by this node, and after an outage this node's own (Durability
   * publishes them again: at start-up, then every sweep).
   */
  async pending (): Promise<JournalEntry[]> {
    const out: JournalEntry[] = []
    if (this.reclaimNeeded) {
      this.reclaimNeeded = false
      out.push(...await this.reclaimOwn())
    }
    for (const member of await this.redis.smembers(SET_KEY)) {
      const [owner, key] = member.split('|')
      if (owner === undefined || key === undefined || owner === this.brokerId) continue
      if (await this.redis.exists(`midge:alive:${owner}`) === 1) continue
      const mine = `midge:journal:${this.brokerId}:claim:${++this.claims}`
      try {
        await this.redis.rename(key, mine)
      } catch {
        // empty (nothing to replay) or claimed by another node first
        await this.redis.srem(SET_KEY, member)
        continue
      }
      await this.redis.sadd(SET_KEY, `${this.brokerId}|${mine}`)
      await this.redis.srem(SET_KEY, member)
      const all = await this.redis.hgetallBuffer(mine)
      const entries = Object.entries(all).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
      this.log.warn({ node: owner, count: entries.length }, `Node ${owner} is gone (no lease for ${LEASE_MS / 1000} s): replaying ${entries.length} acknowledged QoS 1 message(s) from its journal.`)
      for (const [field, value] of entries) out.push(decode(`${mine}|${field}`, value))
      if (entries.length === 0) await this.redis.srem(SET_KEY, `${this.brokerId}|${mine}`)
    }
    return out
  }

  /**
   * After Redis was lost: entries of this node that were journalled but whose publish failed with Redis are left
   * in its journal, and no other node replays the journal of a node that is alive. Moves this node's journal aside
   * (new entries go to a new hash) and returns it for Durability to publish again, like a dead node's.
   */
  async reclaimOwn (): Promise<JournalEntry[]> {
    const old = this.hash
    this.hash = `midge:journal:${this.brokerId}:g${++this.generation}`
    await this.redis.sadd(SET_KEY, `${this.brokerId}|${this.hash}`)
    const mine = `midge:journal:${this.brokerId}:claim:${++this.claims}`
    try {
      await this.redis.rename(old, mine)
    } catch {
      // nothing under the old key (no entry was written): only its name in the set remains
      await this.redis.srem(SET_KEY, `${this.brokerId}|${old}`)
      return []
    }
    await this.redis.sadd(SET_KEY, `${this.brokerId}|${mine}`)
    await this.redis.srem(SET_KEY, `${this.brokerId}|${old}`)
    const entries = Object.entries(await this.redis.hgetallBuffer(mine)).sort(([x], [y]) => x < y ? -1 : x > y ? 1 : 0)
    if (entries.length > 0) this.log.warn({ count: entries.length }, `Publishing again ${entries.length} acknowledged QoS 1 message(s) journalled before Redis was lost.`)
    else await this.redis.srem(SET_KEY, `${this.brokerId}|${mine}`)
    return entries.map(([field, value]) => decode(`${mine}|${field}`, value))
  }

  /** Resolves once the entry is in Redis. Its aedes brokerId/brokerCounter are already assigned. */
  record (packet: JournalPacket & object): Promise<void> {
    const field = String(++this.seq).padStart(16, '0')
    const hash = this.hash
    this.keys.set(packet, `${hash}|${field}`)
    const value = encode({ ...packet, brokerId: packet.brokerId ?? '', brokerCounter: packet.brokerCounter ?? 0 })
    return this.track(this.redis.hset(hash, field, value)).then(() => { this.written++ })
  }

  /** aedes stored the publish: its entry can go. */
  complete (packet: object): void {
    const key = this.keys.get(packet)
    if (key === undefined) return
    this.keys.delete(packet)
    const i = key.lastIndexOf('|')
    this.track(this.redis.hdel(key.slice(0, i), key.slice(i + 1))).catch((err: Error) => this.log.warn({ err: err.message }, 'journal: could not delete a completed entry (it will be published again if this node dies)'))
  }

  /** A replayed entry (`<claimed hash>|<field>`) is published again: delete it. */
  remove (key: string): void {
    const i = key.lastIndexOf('|')
    const hash = key.slice(0, i)
    this.track(this.redis.hdel(hash, key.slice(i + 1)).then(async () => {
      if (await this.redis.exists(hash) === 0) await this.redis.srem(SET_KEY, `${this.brokerId}|${hash}`)
    })).catch((err: Error) => this.log.warn({ err: err.message }, 'journal: could not delete a replayed entry (it will be published again if this node dies)'))
  }

  /** Waits for every write issued so far. */
  async flush (): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight])
  }

  /** Stops renewing the lease; a clean stop leaves an empty journal, which the next sweep of another node drops. */
  async close (): Promise<void> {
    if (this.renewTimer !== undefined) clearInterval(this.renewTimer)
    await this.flush()
    try {
      if (await this.redis.hlen(this.hash) === 0) await this.redis.srem(SET_KEY, `${this.brokerId}|${this.hash}`)
      await this.redis.del(`midge:alive:${this.brokerId}`)
    } catch { /* Redis gone: the lease expires by itself */ }
  }

  private track<T> (p: Promise<T>): Promise<T> {
    this.inflight.add(p)
    const done = (): void => { this.inflight.delete(p) }
    p.then(done, done)
    return p
  }
}
