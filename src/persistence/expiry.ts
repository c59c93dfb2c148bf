/**
 * `persistent_client_expiration`: a persistent session (clean session 0) whose client has not been
 * connected for that long is removed with its subscriptions, its queued messages and its QoS 2 state, as mosquitto
 * does ("Expiring client <id> due to timeout."). LevelDB store only (the in-memory store ends with the process).
 *
 * The last time each persistent client was seen (connect and disconnect) is kept in the store under
 * `midge-seen:<id>`, so a restart does not reset the clock. A session found in the store without that key (written
 * before Midge tracked it) starts its clock at the first sweep. Sweeps run every `interval` (a tenth of the
 * expiration, at most one hour); `sweep(now)` can be called directly (tests, `midge store` tooling).
 */
import type { ClassicLevel } from 'classic-level'
import type { Logger } from '../logging/logger.js'
import type { PersistenceStats, QueueAccounting } from './limits.js'
import { CLIENT_FAMILIES, clientOfKey, clientRange, range, willKey } from './level-layout.js'

const SEEN = 'midge-seen:'
/** MQTT 5: a Session Expiry Interval of 0xFFFFFFFF never expires. */
const NEVER = 0xffff_ffff
/** How often sessions are swept when only v5 intervals (no persistent_client_expiration) are to be kept. */
const V5_SWEEP_MS = 60_000
const SEEN_RANGE = { gte: SEEN, lt: 'midge-seen;' }

export interface ExpiryDeps {
  db: ClassicLevel<string, Buffer>
  /** The aedes persistence object (Midge's wrapper): `cleanSubscriptions` also updates its subscription trie. */
  persistence: { cleanSubscriptions (client: { id: string }): Promise<unknown> }
  isOnline (clientId: string): boolean
  expirationMs: number
  stats: PersistenceStats
  accounting?: QueueAccounting
  log: Logger
}

export class SessionExpiry {
  private timer: NodeJS.Timeout | undefined
  private readonly removed: Array<(clientId: string) => void> = []
  private sweeping: Promise<string[]> | undefined

  constructor (private readonly deps: ExpiryDeps) {}

  start (intervalMs = this.deps.expirationMs > 0 ? Math.min(Math.max(Math.floor(this.deps.expirationMs / 10), 1000), V5_SWEEP_MS) : V5_SWEEP_MS): void {
    const sweep = (): void => { this.sweep().catch((err: Error) => this.deps.log.error({ err: err.message }, 'session expiry sweep failed')) }
    // at once too: sessions that ran out while the broker was stopped go before anyone can connect
    sweep()
    this.timer = setInterval(sweep, intervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    // only waits for a running sweep: its failure is logged by the timer that started it
    await this.sweeping?.catch(() => {})
  }

  /** Calls `fn` with the id of every session this removes (what others keep for it must go too). */
  onRemoved (fn: (clientId: string) => void): void {
    this.removed.push(fn)
  }

  /** A persistent client connected or disconnected now; a v5 client with its Session Expiry Interval (seconds). */
  touch (clientId: string, now = Date.now(), sessionExpiryS?: number): Promise<void> {
    const v = sessionExpiryS === undefined ? String(now) : `${now} ${sessionExpiryS}`
    return this.deps.db.put(`${SEEN}${encodeURIComponent(clientId)}`, Buffer.from(v))
  }

  /** How long this session may stay away (ms), or undefined for never. */
  private limitFor (sessionExpiryS: number | undefined): number | undefined {
    if (sessionExpiryS !== undefined && sessionExpiryS < NEVER) return sessionExpiryS * 1000
    return this.deps.expirationMs > 0 ? this.deps.expirationMs : undefined
  }

  /** Removes every persistent session last seen more than the expiration before `now`; resolves with their ids. */
  sweep (now = Date.now()): Promise<string[]> {
    this.sweeping ??= this.sweepOnce(now).finally(() => { this.sweeping = undefined })
    return this.sweeping
  }

  private async sweepOnce (now: number): Promise<string[]> {
    const { db, log } = this.deps
    const seen = new Map<string, { at: number, expiryS?: number }>()
    for await (const [k, v] of db.iterator(SEEN_RANGE)) {
      const [at, expiryS] = v.toString().split(' ')
      seen.set(k.slice(SEEN.length), expiryS === undefined ? { at: Number(at) } : { at: Number(at), expiryS: Number(expiryS) })
    }
    const sessions = new Set<string>()
    // without persistent_client_expiration only v5 sessions expire, and each of them has its entry: no store scan
    if (this.deps.expirationMs > 0) {
      for (const family of CLIENT_FAMILIES) {
        // the client ids as they are in the keys (encoded), as midge-seen: keeps them
        for await (const k of db.keys(range(family))) sessions.add(encodeURIComponent(clientOfKey(family, k)))
      }
    }
    for (const enc of seen.keys()) sessions.add(enc)
    const expired: string[] = []
    for (const enc of sessions) {
      const id = decodeURIComponent(enc)
      if (this.deps.isOnline(id)) continue
      const last = seen.get(enc)
      if (last === undefined) { await this.touch(id, now); continue }
      const limit = this.limitFor(last.expiryS)
      if (limit === undefined || now - last.at <= limit) continue
      await this.remove(id)
      expired.push(id)
      this.deps.stats.expiredClients++
      log.info({ clientId: id }, `Expiring client ${id} due to timeout.`)
    }
    return expired
  }

  private async remove (id: string): Promise<void> {
    const { db, persistence } = this.deps
    await persistence.cleanSubscriptions({ id })
    for (const family of CLIENT_FAMILIES) await db.clear(clientRange(family, id))
    await db.del(willKey(id))
    await db.del(`${SEEN}${encodeURIComponent(id)}`)
    this.deps.accounting?.forget(id)
    for (const fn of this.removed) fn(id)
  }
}
