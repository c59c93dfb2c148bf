/**
 * Resource limits that mosquitto does not have, or has elsewhere, enforced in Midge code:
 *  - `max_connection_rate N`: new connections per second per source address (fixed one-second window);
 *  - `max_topic_length N`: bytes in a PUBLISH topic, a will topic or a SUBSCRIBE/UNSUBSCRIBE filter;
 *  - `max_subscriptions_per_client N`: distinct topic filters one client may hold (SUBACK 0x80 beyond it).
 * `max_connections` (per listener) and `connect_timeout` are enforced in broker.ts and by aedes.
 */
import type { Client } from 'aedes'

/**
 * Counts connections per source address in the current one-second window. Memory is bounded by the number of
 * distinct addresses that connected within one second: the whole table is dropped when the window rolls over,
 * and it never holds more than `maxAddresses` entries (past that, unknown addresses are refused until the
 * window rolls: an attacker who spreads over that many addresses in one second is a DDoS, not a client).
 */
export class ConnectionRateLimiter {
  private window = 0
  private counts = new Map<string, number>()

  constructor (
    private readonly perSecond: number,
    private readonly maxAddresses = 100_000,
    private readonly now: () => number = Date.now
  ) {}

  get enabled (): boolean { return this.perSecond > 0 }

  /** Number of addresses tracked in the current window (tests, metrics). */
  get size (): number { return this.counts.size }

  /**
   * Records a connection attempt from `address`: 'ok', or 'refused' with `first: true` for the first refusal of
   * that address in this window (log that one only: logging every refused attempt would let a flood fill the disk).
   */
  admit (address: string | undefined): { ok: true } | { ok: false, first: boolean } {
    if (this.perSecond <= 0) return { ok: true }
    const window = Math.floor(this.now() / 1000)
    if (window !== this.window) {
      this.window = window
      this.counts = new Map()
    }
    const key = address ?? '?'
    const n = this.counts.get(key)
    if (n === undefined && this.counts.size >= this.maxAddresses) return { ok: false, first: false }
    const next = (n ?? 0) + 1
    this.counts.set(key, next)
    if (next <= this.perSecond) return { ok: true }
    return { ok: false, first: next === this.perSecond + 1 }
  }
}

/** True if `topic` is longer than `max` bytes of UTF-8 (what travels on the wire); `max` 0 = no limit. */
export function topicTooLong (topic: string, max: number): boolean {
  if (max <= 0) return false
  if (topic.length > max) return true // every UTF-16 unit is at least one byte
  if (topic.length * 3 <= max) return false // every UTF-16 unit is at most three bytes
  return Buffer.byteLength(topic, 'utf8') > max
}

/**
 * Distinct topic filters granted per client, kept beside aedes' `client.subscriptions` because aedes checks
 * every filter of one SUBSCRIBE in parallel and only fills `client.subscriptions` afterwards: counting there
 * would let one SUBSCRIBE with many filters past the limit.
 */
export class SubscriptionCounter {
  private readonly filters = new WeakMap<Client, Set<string>>()

  constructor (private readonly max: number) {}

  /** True if `client` may hold `topic` (already held, or room left); reserves the slot. */
  reserve (client: Client, topic: string): boolean {
    if (this.max <= 0) return true
    let set = this.filters.get(client)
    if (!set) { set = new Set(); this.filters.set(client, set) }
    if (set.has(topic)) return true
    if (set.size >= this.max) return false
    set.add(topic)
    return true
  }

  release (client: Client, topics: readonly string[]): void {
    const set = this.filters.get(client)
    if (!set) return
    for (const t of topics) set.delete(t)
  }

  count (client: Client): number {
    return this.filters.get(client)?.size ?? 0
  }
}

/**
 * Why a will topic is not a valid topic name, or undefined if it is: empty, a wildcard, or U+0000
 * ([MQTT-1.5.3-2], [MQTT-3.3.2-2]). aedes stores and later publishes such a will unchecked (a retained message on
 * `a/+b` came out of the fuzz test); mosquitto 2.0.11 closes the connection without CONNACK, and so does Midge.
 */
export function badWillTopic (topic: string): string | undefined {
  if (topic.length === 0) return 'empty will topic'
  if (topic.includes('+') || topic.includes('#')) return 'wildcard in will topic'
  if (topic.includes('\u0000')) return 'U+0000 in will topic'
  return undefined
}

/** [MQTT-1.5.3-2] a UTF-8 string in MQTT must not contain U+0000: mosquitto 2.0.11 closes the connection. */
export function hasNul (topic: string): boolean {
  return topic.includes('\u0000')
}

/**
 * True for the first event of `key` in the current second, false for the rest: for log lines an attacker can
 * trigger at will (refused connections), which would otherwise fill the disk and, written synchronously, stall
 * the event loop. Memory: the keys seen within one second.
 */
export class OncePerSecond {
  private window = 0
  private seen = new Set<string>()

  constructor (private readonly now: () => number = Date.now) {}

  first (key: string): boolean {
    const window = Math.floor(this.now() / 1000)
    if (window !== this.window) { this.window = window; this.seen = new Set() }
    if (this.seen.has(key)) return false
    if (this.seen.size < 10_000) this.seen.add(key)
    return true
  }
}
