/**
 * mosquitto's `$SYS/broker/...` tree (names, meanings and value formats of mosquitto 2.0's sys_tree.c),
 * published every `sys_interval` seconds, retained at QoS 2, and only when a value changed since the last
 * interval (the first interval publishes everything). `load/...` values are mosquitto's exponentially
 * smoothed per-minute rates over 1, 5 and 15 minutes, formatted with two decimals.
 */
import type { Aedes } from 'aedes'
import type { Logger } from '../logging/logger.js'
import { VERSION } from '../version.js'
import type { BrokerStats, Snapshot } from './stats.js'

export const SYS_PREFIX = '$SYS/broker/'

/** Rates smoothed by `load/...`: topic suffix -> snapshot field. */
const LOADS: Array<[string, Exclude<keyof Snapshot, 'clientsByProtocol'>]> = [
  ['messages/received', 'messagesReceived'],
  ['messages/sent', 'messagesSent'],
  ['publish/dropped', 'publishDropped'],
  ['publish/received', 'publishReceived'],
  ['publish/sent', 'publishSent'],
  ['bytes/received', 'bytesReceived'],
  ['bytes/sent', 'bytesSent'],
  ['sockets', 'sockets'],
  ['connections', 'connections']
]
const WINDOWS: Array<[string, number]> = [['1min', 60], ['5min', 300], ['15min', 900]]

/** mosquitto sys_tree.c calc_load: the new average after `dt` seconds at `ratePerMinute`, over `window` seconds. */
export function smoothLoad (old: number, ratePerMinute: number, dt: number, window: number): number {
  return ratePerMinute + Math.exp(-dt / window) * (old - ratePerMinute)
}

/** Topic -> value for one snapshot (without the load averages). */
export function sysValues (s: Snapshot): Array<[string, string]> {
  return [
    ['version', `midge version ${VERSION}`],
    ['uptime', `${s.uptimeSeconds} seconds`],
    ['clients/total', String(s.clientsTotal)],
    ['clients/inactive', String(s.clientsDisconnected)],
    ['clients/disconnected', String(s.clientsDisconnected)],
    ['clients/active', String(s.clientsConnected)],
    ['clients/connected', String(s.clientsConnected)],
    ['clients/expired', String(s.clientsExpired)],
    ['clients/maximum', String(s.clientsMaximum)],
    ['messages/stored', String(s.retainedCount)],
    ['store/messages/count', String(s.retainedCount)],
    ['store/messages/bytes', String(s.retainedBytes)],
    ['messages/received', String(s.messagesReceived)],
    ['messages/sent', String(s.messagesSent)],
    ['publish/messages/received', String(s.publishReceived)],
    ['publish/messages/sent', String(s.publishSent)],
    ['publish/messages/dropped', String(s.publishDropped)],
    ['publish/bytes/received', String(s.publishBytesReceived)],
    ['publish/bytes/sent', String(s.publishBytesSent)],
    ['bytes/received', String(s.bytesReceived)],
    ['bytes/sent', String(s.bytesSent)],
    ['retained messages/count', String(s.retainedCount)],
    ['subscriptions/count', String(s.subscriptions)],
    ['shared_subscriptions/count', String(s.sharedSubscriptions)],
    ['heap/current', String(s.heapCurrent)],
    ['heap/maximum', String(s.heapMaximum)]
  ]
}

export interface SysPublisherDeps {
  aedes: Aedes
  stats: BrokerStats
  log: Logger
  intervalSeconds: number
  /** Where the tree goes instead of `$SYS/broker/`: a cluster node's own `$SYS/nodes/<node_id>/`. */
  prefix?: string
}

export class SysPublisher {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private stopped = false
  private readonly last = new Map<string, string>()
  private readonly loads = new Map<string, number>()
  private previous: { at: number, snap: Snapshot } | undefined

  constructor (private readonly deps: SysPublisherDeps) {}

  start (): void {
    if (this.deps.intervalSeconds <= 0) return
    this.tick()
    this.timer = setInterval(() => this.tick(), this.deps.intervalSeconds * 1000)
    this.timer.unref()
  }

  /** Stops the timer and waits for a publish round in progress. */
  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    await this.running
  }

  private tick (): void {
    if (this.running || this.stopped) return // a slow store: skip this interval rather than pile up
    this.running = this.publishOnce()
      .catch((err: Error) => this.deps.log.warn({ err: err.message }, '$SYS update failed'))
      .finally(() => { this.running = undefined })
  }

  /** One interval: publish every value that changed since the last one. */
  async publishOnce (): Promise<void> {
    const { aedes, stats } = this.deps
    const snap = await stats.snapshot(aedes)
    const now = Date.now()
    const values = sysValues(snap)
    values.push(...this.loadValues(snap, now))
    this.previous = { at: now, snap }
    const pending: Array<Promise<void>> = []
    for (const [suffix, value] of values) {
      if (this.stopped) break
      if (this.last.get(suffix) === value) continue
      this.last.set(suffix, value)
      pending.push(new Promise<void>(resolve => {
        aedes.publish({
          cmd: 'publish', topic: (this.deps.prefix ?? SYS_PREFIX) + suffix, payload: Buffer.from(value), qos: 2, retain: true, dup: false
        } as Parameters<Aedes['publish']>[0], (err?: Error | null) => {
          if (err) this.last.delete(suffix) // not stored: publish it again next interval
          resolve()
        })
      }))
    }
    await Promise.all(pending)
  }

  /** load/... for this interval: per-minute rates since the last one, smoothed as mosquitto does. */
  private loadValues (snap: Snapshot, now: number): Array<[string, string]> {
    const out: Array<[string, string]> = []
    const prev = this.previous
    const dt = prev ? Math.max((now - prev.at) / 1000, 0.001) : 0
    for (const [name, field] of LOADS) {
      const rate = prev ? ((snap[field] - prev.snap[field]) * 60) / dt : 0
      for (const [label, window] of WINDOWS) {
        const key = `load/${name}/${label}`
        const old = this.loads.get(key) ?? 0
        const value = prev ? smoothLoad(old, rate, dt, window) : 0
        this.loads.set(key, value)
        out.push([key, value.toFixed(2)])
      }
    }
    return out
  }
}
