/**
 * Failed-login throttling per client address, so a password cannot be guessed at line rate.
 *
 * After `freeFailures` failed logins from one address, each further attempt from that address waits for its own
 * slot: attempts are checked no faster than one per `delay`, where the delay doubles with every failure (from
 * `baseMs` up to `maxMs`); once an address has failed, its attempts still being checked count as failures. Opening many connections in parallel does not help: an attempt whose slot would be
 * further away than `maxMs` is refused at once (CONNACK 5) without its password being checked. A success clears
 * the address; an address quiet for `forgetMs` is forgotten. The table is bounded (`maxEntries`, oldest dropped).
 */
/**
 * The throttling key of a client address: IPv4 as is (also when IPv4-mapped, `::ffff:1.2.3.4`), IPv6 by its /64
 * prefix, since one host usually holds a whole /64 and could otherwise rotate addresses between guesses.
 */
export function addressKey (addr: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr)
  if (v4) return v4[1]!
  if (!addr.includes(':')) return addr
  const [head = '', tail = ''] = addr.split('%')[0]!.split('::') as [string?, string?]
  const h = head === '' ? [] : head.split(':')
  const t = addr.includes('::') ? (tail === '' ? [] : tail.split(':')) : []
  const groups = addr.includes('::') ? [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h
  return `${groups.slice(0, 4).map(g => (parseInt(g, 16) || 0).toString(16)).join(':')}::/64`
}

export interface ThrottleOptions {
  freeFailures?: number
  baseMs?: number
  maxMs?: number
  forgetMs?: number
  maxEntries?: number
  now?: () => number
}

interface Entry {
  failures: number
  /** Attempts holding a slot whose check has not finished: counted as failures when spacing the next slot. */
  pending: number
  /** Earliest time the next attempt may be checked. */
  nextAt: number
  lastSeen: number
}

export type ThrottleVerdict = { wait: number } | { refuse: true }

export class LoginThrottle {
  private readonly entries = new Map<string, Entry>()
  readonly freeFailures: number
  readonly baseMs: number
  readonly maxMs: number
  private readonly forgetMs: number
  private readonly maxEntries: number
  private readonly now: () => number

  constructor (opts: ThrottleOptions = {}) {
    this.freeFailures = opts.freeFailures ?? 3
    this.baseMs = opts.baseMs ?? 500
    this.maxMs = opts.maxMs ?? 8_000
    this.forgetMs = opts.forgetMs ?? 15 * 60_000
    this.maxEntries = opts.maxEntries ?? 10_000
    this.now = opts.now ?? Date.now
  }

  get size (): number { return this.entries.size }

  /** Delay between checked attempts after `failures` failures (0 while under the free allowance). */
  delayFor (failures: number): number {
    if (failures < this.freeFailures) return 0
    return Math.min(this.maxMs, this.baseMs * 2 ** (failures - this.freeFailures))
  }

  private live (addr: string, now: number): Entry | undefined {
    const e = this.entries.get(addr)
    if (e && now - e.lastSeen > this.forgetMs) { this.entries.delete(addr); return undefined }
    return e
  }

  /**
   * Called before checking credentials from `addr`: how long to wait first, or refuse outright. Once an address
   * has failed, attempts from it still being checked count as failures too, so a parallel burst is spaced like
   * sequential failures. Before any failure they do not: many devices behind one NAT address reconnecting at
   * once with good passwords are not slowed down.
   */
  reserve (addr: string): ThrottleVerdict {
    const now = this.now()
    const e = this.live(addr, now) ?? this.create(addr, now)
    const delay = this.delayFor(e.failures + (e.failures > 0 ? e.pending : 0))
    e.lastSeen = now
    if (delay === 0) { e.pending++; return { wait: 0 } }
    const slot = Math.max(now, e.nextAt)
    if (slot - now > this.maxMs) return { refuse: true }
    e.nextAt = slot + delay
    e.pending++
    return { wait: slot - now }
  }

  private create (addr: string, now: number): Entry {
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!)
    const e: Entry = { failures: 0, pending: 0, nextAt: now, lastSeen: now }
    this.entries.set(addr, e)
    return e
  }

  /** The check of an attempt that held no slot or ended without an answer (provider error). */
  release (addr: string): void {
    const e = this.entries.get(addr)
    if (e && e.pending > 0) e.pending--
  }

  failure (addr: string): void {
    const now = this.now()
    const e = this.live(addr, now) ?? this.create(addr, now)
    if (e.pending > 0) e.pending--
    e.failures++
    e.lastSeen = now
    e.nextAt = Math.max(e.nextAt, now + this.delayFor(e.failures))
  }

  success (addr: string): void {
    this.entries.delete(addr)
  }
}
