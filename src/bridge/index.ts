/**
 * The bridges of one broker: started after aedes exists and before the store's journal is replayed (a replayed
 * message must find the bridge's subscription), stopped before aedes closes. Per bridge, `$SYS/broker/bridges/NAME/...`
 * (published every sys_interval, retained, when changed) and Prometheus metrics.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Aedes, AedesPublishPacket } from 'aedes'
import { Registry, Gauge, Counter } from 'prom-client'
import type { Config } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import type { AuthChain } from '../auth/chain.js'
import { BrokerError, fileErrorReason } from '../errors.js'
import { Bridge, type BridgeTlsFiles } from './bridge.js'
import { BridgeQueue } from './queue.js'
import type { BridgeConfig } from '../config/bridge.js'
import type { RedisClient } from '../cluster/redis.js'
import { RedisLease } from '../cluster/lease.js'

export type { BridgeConfig } from '../config/bridge.js'
export { Bridge } from './bridge.js'

export interface BridgeDeps {
  config: Config
  aedes: Aedes
  auth: AuthChain
  log: Logger
  /** cluster_redis: the node's store connection and its broker id (the lease holder). */
  cluster?: { redis: RedisClient, holder: string }
}

/** The Redis key of a bridge's lease. */
export function bridgeLeaseKey (name: string): string {
  return `midge:bridge:${name}:lease`
}

function readTlsFile (b: BridgeConfig, option: string, path: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    throw new BrokerError('TLS', `Error: bridge ${b.name}: cannot read ${option} ${path}: ${fileErrorReason(err)}.`, { cause: err })
  }
}

/** The certificates and key a bridge presents and trusts, read once at start-up. */
function tlsFiles (b: BridgeConfig): BridgeTlsFiles | undefined {
  const t = b.tls
  if (!t) return undefined
  const ca: Buffer[] = []
  if (t.cafile) ca.push(readTlsFile(b, 'bridge_cafile', t.cafile))
  if (t.capath) {
    let names: string[]
    try {
      names = readdirSync(t.capath).filter(n => /\.(crt|pem)$/.test(n)).sort()
    } catch (err) {
      throw new BrokerError('TLS', `Error: bridge ${b.name}: cannot read bridge_capath ${t.capath}: ${fileErrorReason(err)}.`, { cause: err })
    }
    for (const n of names) ca.push(readTlsFile(b, 'bridge_capath', join(t.capath, n)))
  }
  return {
    ...(ca.length > 0 ? { ca } : {}),
    ...(t.certfile ? { cert: readTlsFile(b, 'bridge_certfile', t.certfile) } : {}),
    ...(t.keyfile ? { key: readTlsFile(b, 'bridge_keyfile', t.keyfile) } : {})
  }
}

const STATE_VALUE = { stopped: 0, waiting: 0, connecting: 0, connected: 1 } as const

export class Bridges {
  private sysTimer: NodeJS.Timeout | undefined
  private readonly lastSys = new Map<string, string>()
  private readonly register = new Registry()

  private constructor (readonly list: Bridge[], private readonly deps: BridgeDeps) {
    this.registerMetrics()
  }

  private readonly leases: RedisLease[] = []

  static async start (deps: BridgeDeps): Promise<Bridges> {
    const { config, log } = deps
    const list: Bridge[] = []
    const set = new Bridges(list, deps)
    if (config.bridges.length === 0) return set
    // the ACL of the bridge's local identity is the one of the first MQTT listener (global unless per_listener_settings)
    const listener = config.listeners.find(l => l.protocol !== 'http') ?? config.listeners[0]!
    const cluster = deps.cluster
    try {
      for (const b of config.bridges) {
        const files = tlsFiles(b)
        const open = async (): Promise<Bridge> => {
          const queue = cluster
            ? await BridgeQueue.openRedis({ name: b.name, redis: cluster.redis, limit: b.maxQueuedMessages })
            : await BridgeQueue.open({
              name: b.name,
              ...(config.persistence.enabled ? { location: config.persistence.location } : {}),
              sync: config.persistence.sync,
              limit: b.maxQueuedMessages
            })
          const where = b.addresses.map(a => a.websocket ? `${a.websocket.secure ? 'wss' : 'ws'}://${a.host}:${a.port}${a.websocket.path}` : `${a.host}:${a.port}`).join(', ')
          const kept = cluster ? 'in Redis' : config.persistence.enabled ? 'in the store' : 'in memory'
          log.info({ bridge: b.name }, `Bridge ${b.name}: start_type ${b.startType} to ${where}${b.tls ? ' (TLS)' : ''}, ${b.topics.length} topic(s), queue ${kept} (at most ${b.maxQueuedMessages}).`)
          if (queue.length > 0) log.info({ bridge: b.name, queued: queue.length }, `Bridge ${b.name}: ${queue.length} message(s) ${cluster ? 'left by the previous holder' : 'from the last run'} are queued for the remote.`)
          const bridge = new Bridge(b, queue, { aedes: deps.aedes, auth: deps.auth, listener, log, maxInflight: Math.max(1, config.limits.maxInflightMessages), retainAvailable: config.limits.retainAvailable, messageSizeLimit: config.limits.messageSizeLimit, ...(files ? { tlsFiles: files } : {}) })
          try {
            await bridge.start()
          } catch (err) {
            await bridge.close()
            throw err
          }
          return bridge
        }
        if (!cluster) {
          list.push(await open())
          continue
        }
        let running: Bridge | undefined
        const lease = new RedisLease(cluster.redis, bridgeLeaseKey(b.name), cluster.holder, `bridge ${b.name}`, {
          acquired: async () => {
            log.info({ bridge: b.name, lease: bridgeLeaseKey(b.name) }, `Bridge ${b.name}: this node (${cluster.holder}) holds the bridge's lease and runs it.`)
            running = await open()
            list.push(running)
          },
          lost: async () => {
            const r = running
            running = undefined
            if (r === undefined) return
            list.splice(list.indexOf(r), 1)
            log.info({ bridge: b.name }, `Bridge ${b.name}: stopped on this node (${cluster.holder}); another node takes it over.`)
            await r.close()
          }
        }, log)
        set.leases.push(lease)
        await lease.start()
      }
    } catch (err) {
      await set.close()
      throw err
    }
    if (config.sysInterval > 0) {
      set.sysTimer = setInterval(() => set.publishSys(), config.sysInterval * 1000)
      set.sysTimer.unref()
    }
    return set
  }

  /** $SYS/broker/bridges/NAME/{state,queued,sent,received,dropped,reconnects}: retained, only when changed. */
  publishSys (): void {
    for (const b of this.list) {
      const values: Record<string, number> = {
        state: STATE_VALUE[b.state],
        queued: b.queue.length,
        sent: b.stats.sent,
        received: b.stats.received,
        dropped: b.stats.dropped,
        reconnects: b.stats.reconnects
      }
      for (const [k, v] of Object.entries(values)) {
        const topic = `$SYS/broker/bridges/${b.cfg.name}/${k}`
        const text = String(v)
        if (this.lastSys.get(topic) === text) continue
        this.lastSys.set(topic, text)
        this.deps.aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(text), qos: 0, retain: true, dup: false } as AedesPublishPacket, err => {
          if (err === undefined || err === null) return
          // not stored: forgotten, so that the next round publishes the value again
          if (this.lastSys.get(topic) === text) this.lastSys.delete(topic)
          this.deps.log.warn({ topic, err: err.message }, 'could not publish a bridge $SYS topic')
        })
      }
    }
  }

  // prom-client collectors register themselves with the registry on construction: nothing else holds them
  /* eslint-disable no-new */
  private registerMetrics (): void {
    const register = this.register
    const list = this.list
    new Gauge({
      name: 'midge_bridge_connected',
      help: 'Bridge connection state: 1 connected to its remote, 0 not.',
      labelNames: ['bridge'],
      registers: [register],
      collect () { for (const b of list) this.set({ bridge: b.cfg.name }, STATE_VALUE[b.state]) }
    })
    new Gauge({
      name: 'midge_bridge_queued_messages',
      help: 'QoS 1/2 messages held for the remote (not yet acknowledged by it).',
      labelNames: ['bridge'],
      registers: [register],
      collect () { for (const b of list) this.set({ bridge: b.cfg.name }, b.queue.length) }
    })
    const counters: Array<[string, string, 'sent' | 'received' | 'dropped' | 'reconnects']> = [
      ['sent', 'Messages the remote took (QoS 1/2 acknowledged, QoS 0 written).', 'sent'],
      ['received', 'Messages received from the remote.', 'received'],
      ['dropped', 'Messages not bridged: outgoing QoS 0 while disconnected, queue full, too large, or incoming refused by the ACL.', 'dropped'],
      ['reconnects', 'Successful connections to the remote after the first.', 'reconnects']
    ]
    for (const [name, help, field] of counters) {
      new Counter({
        name: `midge_bridge_${name}_total`,
        help,
        labelNames: ['bridge'],
        registers: [register],
        collect () {
          this.reset()
          for (const b of list) this.inc({ bridge: b.cfg.name }, b.stats[field])
        }
      })
    }
  }
  /* eslint-enable no-new */

  /** Prometheus text of the bridge metrics ('' without bridges). */
  async metrics (): Promise<string> {
    if (this.list.length === 0) return ''
    return this.register.metrics()
  }

  /** A view for the admin API: no credentials. */
  view (): Array<{ name: string, state: string, remote: string | undefined, queued: number, sent: number, received: number, dropped: number, reconnects: number, lastError: string | undefined }> {
    return this.list.map(b => ({ name: b.cfg.name, state: b.state, remote: b.remote, queued: b.queue.length, ...b.stats, lastError: b.lastError }))
  }

  async close (): Promise<void> {
    clearInterval(this.sysTimer)
    // a cluster node stops its bridges and releases their leases: another node takes them over at once
    await Promise.all(this.leases.map(l => l.stop()))
    await Promise.all(this.list.map(b => b.close().catch((err: Error) => this.deps.log.error({ bridge: b.cfg.name, err: err.message }, `Bridge ${b.cfg.name}: closing failed: ${err.message}.`))))
  }
}

/** /metrics with the bridge metrics after the broker's. */
export function withBridgeMetrics<T extends { contentType: string, metrics (): Promise<string> }> (source: T, bridges: () => Bridges | undefined): T {
  return { ...source, metrics: async () => `${await source.metrics()}${await bridges()?.metrics() ?? ''}` }
}
