/**
 * MQTT 5 Will Delay Interval across a restart (LevelDB store). aedes arms the delay as an in-memory timer when a
 * client with a delayed will goes away without DISCONNECT; the will itself is in the store (`will:<id>`), but after a
 * restart aedes' own sweep of wills left by a stopped broker publishes it some minutes after start-up, whatever the
 * delay said. So when aedes arms a delay, the time the will is due (from the disconnect: aedes has already capped the
 * delay at the session expiry, so this is whichever ends first) is kept in the store as `midge-will-due:<id>`; it
 * goes when the will is published or the client comes back.
 *
 * At start-up, before any listener opens: a will whose time has passed (the time stopped counts) is published at
 * once, before the session expiry sweep can remove the session with it; the others are given to this broker (so
 * aedes' sweep leaves them alone) and published when due, unless the client has connected again by then.
 */
import type { ClassicLevel } from 'classic-level'
import type { Aedes, Client } from 'aedes'
import type { Logger } from '../logging/logger.js'
import { connectedClients, watchWills, type StoredWill } from '../aedes/internals.js'

const DUE = 'midge-will-due:'
const DUE_RANGE = { gte: DUE, lt: 'midge-will-due;' }

/** The part of aedes' store used here (Midge's wrapper around it). */
export interface WillStore {
  getWill (client: { id: string }): Promise<StoredWill | undefined>
  putWill (client: { id: string }, packet: StoredWill): Promise<void>
  delWill (client: { id: string }): Promise<unknown>
}

export class DelayedWills {
  private readonly timers = new Map<string, NodeJS.Timeout>()
  /** Ids with a due time in the store. */
  private readonly recorded = new Set<string>()
  /** Writes in call order: a record and the forget that follows it touch the same key. */
  private writes: Promise<void> = Promise.resolve()
  private closed = false

  constructor (private readonly db: ClassicLevel<string, Buffer>, private readonly store: WillStore, private readonly log: Logger) {}

  /** Restores the delays kept by the last run, then follows aedes' wills. Before any listener opens. */
  async attach (aedes: Aedes, now = Date.now()): Promise<void> {
    const due: Array<[string, number]> = []
    for await (const [k, v] of this.db.iterator(DUE_RANGE)) due.push([decodeURIComponent(k.slice(DUE.length)), Number(v.toString())])
    for (const [id, at] of due) {
      const will = await this.store.getWill({ id })
      if (will === undefined) { await this.db.del(this.key(id)); continue }
      this.recorded.add(id)
      if (at <= now) {
        this.log.info({ clientId: id, topic: will.topic }, `Publishing the will of ${id}: its delay ended while the broker was stopped.`)
        await this.publish(aedes, id, will)
        continue
      }
      // this broker's now: aedes' sweep publishes the wills of brokers that are gone, at once
      await this.store.putWill({ id }, will)
      this.arm(aedes, id, at - now)
    }
    watchWills(aedes, (id, delaySeconds) => this.record(id, Date.now() + delaySeconds * 1000), id => this.forget(id))
    aedes.on('client', (c: Client) => {
      const t = this.timers.get(c.id)
      if (t !== undefined) { clearTimeout(t); this.timers.delete(c.id) }
      this.forget(c.id)
    })
  }

  private key (id: string): string { return `${DUE}${encodeURIComponent(id)}` }

  private arm (aedes: Aedes, id: string, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(id)
      if (connectedClients(aedes)[id] !== undefined) return
      this.store.getWill({ id })
        .then(will => will === undefined ? this.forget(id) : this.publish(aedes, id, will))
        .catch((err: Error) => this.log.error({ clientId: id, err: err.message }, 'publishing a delayed will failed'))
    }, ms)
    t.unref()
    this.timers.set(id, t)
  }

  private async publish (aedes: Aedes, id: string, will: StoredWill): Promise<void> {
    const { brokerId: _b, clientId: _c, ...packet } = will
    await new Promise<void>((resolve, reject) => aedes.publish({ ...packet, cmd: 'publish', dup: false } as never, (err?: Error | null) => err ? reject(err) : resolve()))
    await this.store.delWill({ id })
    this.forget(id)
  }

  private enqueue (what: string, id: string, op: () => Promise<void>): void {
    this.writes = this.writes.then(op).catch((err: Error) => this.log.warn({ clientId: id, err: err.message }, `could not ${what} the will delay in the store`))
  }

  /** aedes armed a delayed will due at `dueMs`. */
  private record (id: string, dueMs: number): void {
    this.recorded.add(id)
    this.enqueue('record', id, async () => {
      await this.db.put(this.key(id), Buffer.from(String(dueMs)))
      this.log.info({ clientId: id, due: new Date(dueMs).toISOString() }, `Will of ${id} delayed until ${new Date(dueMs).toISOString()}.`)
    })
  }

  private forget (id: string): void {
    if (!this.recorded.delete(id)) return
    this.enqueue('remove', id, () => this.db.del(this.key(id)))
  }

  /** Stops the timers and waits for the last writes (before the store closes). */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
    await this.writes
  }
}
