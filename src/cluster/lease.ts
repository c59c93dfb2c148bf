/**
 * A lease in Redis that one node of the cluster holds at a time (a bridge runs on exactly one node):
 *
 *   <key>   string = holder (the node's broker id), expires after LEASE_MS, renewed every RENEW_MS by its holder
 *
 * Every node tries to take a free lease every RENEW_MS (SET NX), so a node killed with SIGKILL is replaced within
 * LEASE_MS + RENEW_MS, and a node that stops releases the lease (compare-and-delete) and is replaced within RENEW_MS.
 * A holder that cannot renew (Redis gone, or the lease taken by another node after a long pause) gives the lease up
 * itself once RENEW_MS before it would have expired, so two nodes never believe they hold it at the same time (as
 * long as the nodes' clocks run at the same rate).
 */
import type { Logger } from '../logging/logger.js'
import { LEASE_MS } from './journal.js'
import type { RedisClient } from './redis.js'

const RENEW_MS = 1_000

/** Renews only a lease this holder still has. */
const RENEW_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
/** Deletes only a lease this holder still has. */
const RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

export interface LeaseEvents {
  /** The lease is ours: start the work. A failure calls `lost` and releases the lease (another node may do better). */
  acquired: () => Promise<void>
  /** The lease is no longer ours (or we are stopping): stop the work. */
  lost: () => Promise<void>
}

export class RedisLease {
  /** Until when (Date.now()) the lease is ours for sure; 0 = not held. */
  private heldUntil = 0
  private timer: NodeJS.Timeout | undefined
  private ticking: Promise<void> | undefined
  private stopped = false
  private failing = false
  /** Fires RENEW_MS before the lease would expire for the other nodes, unless a renewal came first. */
  private guard: NodeJS.Timeout | undefined

  constructor (
    private readonly redis: RedisClient,
    readonly key: string,
    readonly holder: string,
    private readonly what: string,
    private readonly events: LeaseEvents,
    private readonly log: Logger
  ) {}

  get held (): boolean {
    return this.heldUntil > 0
  }

  /** Tries at once, then every RENEW_MS. */
  async start (): Promise<void> {
    await this.tick()
    this.timer = setInterval(() => { if (this.ticking === undefined) void this.tick() }, RENEW_MS)
    this.timer.unref()
  }

  private tick (): Promise<void> {
    this.ticking = this.step().finally(() => { this.ticking = undefined })
    return this.ticking
  }

  private async step (): Promise<void> {
    if (this.stopped) return
    const now = Date.now()
    try {
      if (this.held) {
        const ok = await this.redis.eval(RENEW_SCRIPT, 1, this.key, this.holder, String(LEASE_MS)) === 1
        // given up meanwhile (the guard fired while Redis was slow): free it, a fresh acquisition starts the work
        if (!this.held) {
          if (ok) await this.release()
          return
        }
        if (ok) {
          this.hold(now)
          this.recovered()
          return
        }
        this.log.warn({ lease: this.key }, `cluster: ${this.what}: the lease was taken by another node; stopping here.`)
        await this.drop()
        return
      }
      const got = await this.redis.set(this.key, this.holder, 'PX', LEASE_MS, 'NX') === 'OK'
      this.recovered()
      if (!got || this.stopped) return
      this.hold(now)
      // in the background: renewals go on while the work starts (a long queue takes a while to read)
      void this.serial(async () => {
        try {
          await this.events.acquired()
        } catch (err) {
          this.log.error({ lease: this.key, err: (err as Error).message }, `cluster: ${this.what}: could not start after taking the lease: ${(err as Error).message}; releasing it.`)
          this.heldUntil = 0
          await this.events.lost()
          await this.release()
        }
      })
    } catch (err) {
      if (!this.failing) {
        this.failing = true
        this.log.warn({ lease: this.key, err: (err as Error).message }, `cluster: ${this.what}: Redis did not answer the lease (${(err as Error).message}).`)
      }
    }
  }

  /** Held until `since` + LEASE_MS; given up RENEW_MS before that unless renewed: by then another node may take it. */
  private hold (since: number): void {
    this.heldUntil = since + LEASE_MS
    clearTimeout(this.guard)
    this.guard = setTimeout(() => {
      if (!this.held || Date.now() < this.heldUntil - RENEW_MS) return
      this.log.warn({ lease: this.key }, `cluster: ${this.what}: lease not renewed for ${(LEASE_MS - RENEW_MS) / 1000} s; stopping here.`)
      void this.drop()
    }, LEASE_MS - RENEW_MS)
    this.guard.unref()
  }

  private recovered (): void {
    if (!this.failing) return
    this.failing = false
    this.log.info({ lease: this.key }, `cluster: ${this.what}: Redis answers the lease again.`)
  }

  /** Starting and stopping the work, one after the other, in the order the lease changed. */
  private work: Promise<void> = Promise.resolve()

  private serial (fn: () => Promise<void>): Promise<void> {
    this.work = this.work.then(fn).catch((err: Error) => {
      this.log.error({ lease: this.key, err: err.message }, `cluster: ${this.what}: ${err.message}`)
    })
    return this.work
  }

  private async drop (): Promise<void> {
    if (!this.held) return
    this.heldUntil = 0
    clearTimeout(this.guard)
    await this.serial(() => this.events.lost())
  }

  private async release (): Promise<void> {
    await this.redis.eval(RELEASE_SCRIPT, 1, this.key, this.holder)
  }

  /** Stops trying; if held: stops the work, then releases the lease so that another node takes over at once. */
  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    clearTimeout(this.guard)
    await this.ticking
    await this.work
    if (!this.held) return
    await this.drop()
    try {
      await this.release()
    } catch (err) {
      this.log.warn({ lease: this.key, err: (err as Error).message }, `cluster: ${this.what}: could not release the lease (${(err as Error).message}); another node takes over once it expires.`)
    }
  }
}
