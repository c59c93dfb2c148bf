/**
 * Is Redis there? A cluster node cannot route a message or store a session without Redis, so while any
 * of its connections is down the node:
 *   - logs it at error level, once when it happens and every 10 s while it lasts, and once (warn) when it is back;
 *   - refuses publishes (the client's connection is closed before any PUBACK/PUBREC: its library keeps the message
 *     and sends it again after reconnecting) and new connections (CONNACK 3, server unavailable);
 *   - after GRACE_MS, closes every client connection, so that subscribers learn that nothing reaches them
 *     (persistent sessions get what was queued for them when they reconnect).
 * A blip shorter than GRACE_MS costs only the publishes that arrive during it.
 */
import { EventEmitter } from 'node:events'
import type { Logger } from '../logging/logger.js'
import type { RedisClient } from './redis.js'

export const GRACE_MS = 1_000
const REPEAT_MS = 10_000

export class RedisHealth extends EventEmitter {
  /** False while any connection is not ready. */
  up = true
  private downSince = 0
  private graceTimer: NodeJS.Timeout | undefined
  private repeatTimer: NodeJS.Timeout | undefined
  private closed = false

  constructor (private readonly conns: Record<string, RedisClient>, private readonly label: string, private readonly log: Logger) {
    super()
    for (const [name, c] of Object.entries(conns)) {
      c.on('close', () => this.lost(name))
      c.on('ready', () => this.check())
      c.on('error', (err: Error) => {
        if (!this.up || this.closed) return
        this.log.error({ err: err.message, redis: label, connection: name }, `Redis error on the ${name} connection: ${err.message}`)
      })
    }
  }

  private lost (name: string): void {
    if (this.closed || !this.up) return
    this.up = false
    this.downSince = Date.now()
    this.log.error({ redis: this.label, connection: name },
      `Redis connection lost (${this.label}, ${name}): publishes and new connections are refused until it is back; clients are disconnected in ${GRACE_MS / 1000} s.`)
    this.emit('down')
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined
      if (!this.up && !this.closed) this.emit('disconnect-clients')
    }, GRACE_MS).unref()
    this.repeatTimer = setInterval(() => {
      this.log.error({ redis: this.label, downMs: Date.now() - this.downSince }, `Redis (${this.label}) still unreachable after ${Math.round((Date.now() - this.downSince) / 1000)} s.`)
    }, REPEAT_MS).unref()
  }

  private check (): void {
    if (this.up || this.closed) return
    if (!Object.values(this.conns).every(c => c.status === 'ready')) return
    this.up = true
    clearTimeout(this.graceTimer)
    clearInterval(this.repeatTimer)
    const ms = Date.now() - this.downSince
    this.log.warn({ redis: this.label, downMs: ms }, `Redis connection back (${this.label}) after ${ms} ms: accepting publishes and connections again.`)
    this.emit('up', ms)
  }

  close (): void {
    this.closed = true
    clearTimeout(this.graceTimer)
    clearInterval(this.repeatTimer)
  }
}
