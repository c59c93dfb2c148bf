/**
 * One Midge node of several on one Redis. Midge does not invent clustering: it hands aedes the
 * distributed parts aedes already has, on connections Midge opens (redis.ts):
 *   - `mq`: mqemitter-redis, so a publish on any node reaches the subscribers of every node (Redis pub/sub), and
 *     aedes' own `$SYS/<id>/new/clients` message closes a client id's older connection on another node;
 *   - `persistence`: aedes-persistence-redis, so sessions, offline queues, retained messages and wills are shared;
 *   - the QoS 1 journal in Redis (journal.ts) and the Redis health gate (health.ts).
 *
 * aedes' broker id is `<node_id>-<n>`, n counting this node id's starts (Redis INCR): unique per process, so that a
 * restarted node never reuses the `packet:<brokerId>:<counter>` keys of messages its previous run queued, and the
 * wills of the previous run are published by aedes as those of a broker that is gone.
 */
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import type { ClusterConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import { BrokerError } from '../errors.js'
import { connectRedis, redisLabel, type RedisClient } from './redis.js'
import { RedisJournal, LEASE_MS } from './journal.js'
import { RedisHealth } from './health.js'

type MqEmitterRedisFactory = (opts: Record<string, unknown>) => MqLike
export interface MqLike {
  close (cb: () => void): void
  state: NodeJS.EventEmitter
}

const require = createRequire(import.meta.url)

/** aedes heartbeat in cluster mode: a node that stops beating for 3 intervals is gone and its clients' wills fire. */
export const HEARTBEAT_MS = 2_000
/** How often a node looks for the journals of nodes that are gone. */
const SWEEP_MS = 2_000

export class ClusterNode {
  readonly label: string
  private sweepTimer: NodeJS.Timeout | undefined
  private sweeping: Promise<void> | undefined

  private constructor (
    readonly config: ClusterConfig,
    readonly brokerId: string,
    readonly conns: { store: RedisClient, pub: RedisClient, sub: RedisClient },
    readonly mq: MqLike,
    readonly journal: RedisJournal,
    readonly health: RedisHealth,
    private readonly log: Logger
  ) {
    this.label = redisLabel(config)
  }

  get nodeId (): string { return this.config.nodeId }

  /** Connects to Redis (or throws MIDGE_ERR_REDIS: exit 1), takes a broker id and the journal lease. */
  static async connect (c: ClusterConfig, log: Logger): Promise<ClusterNode> {
    const opened: RedisClient[] = []
    try {
      const store = await connectRedis(c, 'store')
      opened.push(store)
      const pub = await connectRedis(c, 'pub')
      opened.push(pub)
      const sub = await connectRedis(c, 'sub')
      opened.push(sub)
      const boot = await store.incr(`midge:boots:${c.nodeId}`)
      const brokerId = `${c.nodeId}-${boot}`
      const mqFactory = require('mqemitter-redis') as MqEmitterRedisFactory
      // aedes' own emitter matches `a/#` against `a` (matchEmptyLevels); so must this one
      const mq = mqFactory({ pubConn: pub, subConn: sub, matchEmptyLevels: true })
      // without a listener, mqemitter-redis' 'error' would throw; health.ts reports connection trouble
      mq.state.on('error', () => {})
      const health = new RedisHealth({ store, pub, sub }, redisLabel(c), log)
      const journal = new RedisJournal(store, brokerId, log)
      await journal.start()
      // publishes journalled before an outage may have failed after their PUBACK: the next sweep publishes them again
      health.on('up', () => { journal.reclaimNeeded = true })
      log.info({ brokerId, redis: redisLabel(c) }, `Cluster node ${c.nodeId} (broker id ${brokerId}) on Redis ${redisLabel(c)}.`)
      return new ClusterNode(c, brokerId, { store, pub, sub }, withCloseDeadline(mq, pub, sub, log), journal, health, log)
    } catch (err) {
      for (const conn of opened) conn.disconnect()
      if (err instanceof BrokerError) throw err
      throw new BrokerError('REDIS', `Error: Redis at ${redisLabel(c)} (cluster_redis, ${c.source}): ${(err as Error).message}.`, { cause: err })
    }
  }

  /**
   * aedes-persistence-redis on the store connection. Its `maxSessionDelivery` (default 1000) caps what a reconnecting
   * persistent session gets of its offline queue: the rest waited in Redis for the next reconnect (measured: 1300
   * queued, 1000 delivered). -1 makes its LRANGE 0..-1 read the whole queue, as the LevelDB store does.
   */
  async createStore (): Promise<unknown> {
    const { default: redisPersistence } = await import('aedes-persistence-redis')
    return claimWills(redisPersistence({ conn: this.conns.store, maxSessionDelivery: -1 }) as object, this.conns.store)
  }

  /**
   * Every SWEEP_MS, publishes again the journals of nodes gone for LEASE_MS (see journal.ts). `replay` is
   * Durability's, which also runs once at start-up.
   */
  startSweep (replay: () => Promise<void>): void {
    this.sweepTimer = setInterval(() => {
      if (this.sweeping !== undefined || !this.health.up) return
      this.sweeping = replay()
        .catch((err: Error) => this.log.error({ err: err.message }, 'replaying the journal of a node that is gone failed (retried)'))
        .finally(() => { this.sweeping = undefined })
    }, SWEEP_MS).unref()
    this.log.debug({ leaseMs: LEASE_MS }, 'journal sweep started')
  }

  /** After aedes closed (which closed `mq`): stop sweeping, release the lease. The store connection is the store's. */
  async close (): Promise<void> {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer)
    await this.sweeping
    this.health.close()
    await this.journal.close()
  }
}

/**
 * Every node publishes the wills of a broker that is gone (aedes `_clearWills`, every 4 heartbeats), with nothing
 * that stops two nodes from publishing the same will: with three nodes, a will of a client of the dead node reached
 * its subscriber twice (40-cluster). A node now publishes a will only if it is the first to claim it in Redis.
 */
function claimWills (store: object, redis: RedisClient): object {
  interface Will { brokerId?: string, clientId?: string }
  const streamWill = (Reflect.get(store, 'streamWill') as (brokers: unknown) => AsyncIterable<Will>).bind(store)
  async function * claimed (brokers: unknown): AsyncGenerator<Will> {
    for await (const w of streamWill(brokers)) {
      const key = `midge:will-claim:${w.brokerId ?? ''}:${encodeURIComponent(w.clientId ?? '')}`
      if (await redis.set(key, '1', 'PX', 60_000, 'NX') === 'OK') yield w
    }
  }
  return new Proxy(store, {
    get (target, prop) {
      if (prop === 'streamWill') return (brokers: unknown) => Readable.from(claimed(brokers))
      const v = Reflect.get(target, prop) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
}

/** How long closing the emitter waits for Redis to answer QUIT before dropping the connections. */
const EMITTER_CLOSE_MS = 1_000

/** mqemitter-redis' close waits for Redis to answer QUIT: with Redis gone, drop the connections after EMITTER_CLOSE_MS. */
function withCloseDeadline (mq: MqLike, pub: RedisClient, sub: RedisClient, log: Logger): MqLike {
  const close = mq.close.bind(mq)
  mq.close = (cb: () => void) => {
    const t = setTimeout(() => {
      log.warn(`cluster: Redis did not answer QUIT within ${EMITTER_CLOSE_MS} ms while closing the emitter; its connections were dropped`)
      pub.disconnect()
      sub.disconnect()
    }, EMITTER_CLOSE_MS)
    close(() => { clearTimeout(t); cb() })
  }
  return mq
}
