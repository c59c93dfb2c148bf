/**
 * Redis connections of a cluster node. Midge opens them itself, from `cluster_redis*`, and hands them to
 * mqemitter-redis (`pubConn`/`subConn`) and aedes-persistence-redis (`conn`), so that all three share one set of
 * options: TLS, password, and how long a command waits when Redis is gone.
 *
 * ioredis is the one those two packages bring (loaded through mqemitter-redis' own resolution, not a dependency of
 * Midge's). Its defaults queue commands while Redis is away and fail them only after 20 reconnection attempts
 * (about 10 s): publishes would hang, then vanish. Midge fails a command after 2 attempts (about 0.3 s), so that
 * aedes reports an error to the client (its connection closes) instead of losing the message silently.
 */
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import type { Redis as RedisClient, RedisOptions } from 'ioredis'
import type { ClusterConfig } from '../config/schema.js'
import { redactUrl } from '../config/mosquitto-conf.js'
import { BrokerError } from '../errors.js'

export type { RedisClient }

type RedisCtor = new (url: string, opts: RedisOptions) => RedisClient
const requireFromMq = createRequire(createRequire(import.meta.url).resolve('mqemitter-redis'))
const Redis = requireFromMq('ioredis') as RedisCtor

/** Where a cluster node's Redis is, for messages: no password. */
export function redisLabel (c: ClusterConfig): string {
  return redactUrl(c.redisUrl)
}

/** How long one connection attempt to Redis may take. */
const CONNECT_TIMEOUT_MS = 5_000
/** Reconnect back-off: this much longer per attempt, up to RECONNECT_MAX_MS. */
const RECONNECT_STEP_MS = 100
const RECONNECT_MAX_MS = 1_000

export function redisOptions (c: ClusterConfig, name: string): RedisOptions {
  const opts: RedisOptions = {
    connectionName: `midge:${c.nodeId}:${name}`,
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // see the file comment: fail fast while Redis is away, keep reconnecting (every second at most)
    maxRetriesPerRequest: 2,
    retryStrategy: (times: number) => Math.min(times * RECONNECT_STEP_MS, RECONNECT_MAX_MS),
    enableAutoPipelining: true
  }
  if (c.redisPassword !== undefined) opts.password = c.redisPassword
  if (c.redisTls) {
    let ca: Buffer | undefined
    if (c.redisCafile !== undefined) {
      try {
        ca = readFileSync(c.redisCafile)
      } catch (err) {
        throw new BrokerError('REDIS', `Error: cannot read cluster_redis_cafile ${c.redisCafile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, { cause: err })
      }
    }
    const host = new URL(c.redisUrl).hostname.replace(/^\[|\]$/g, '')
    // SNI takes a host name only (RFC 6066); an address is checked against the certificate's IP entries
    opts.tls = { ...(isIP(host) === 0 ? { servername: host } : {}), ...(ca !== undefined ? { ca } : {}) }
  }
  return opts
}

/**
 * Opens one connection and waits until Redis answers (AUTH and SELECT included). A refused connection, a wrong
 * password or a TLS failure rejects with one readable line (exit 1); nothing keeps retrying in the background.
 */
export async function connectRedis (c: ClusterConfig, name: string, timeoutMs = CONNECT_TIMEOUT_MS): Promise<RedisClient> {
  const url = c.redisUrl.replace(/^rediss:/, 'redis:')
  const conn = new Redis(url, redisOptions(c, name))
  let lastErr: Error | undefined
  const onError = (err: Error): void => { lastErr = err }
  conn.on('error', onError)
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(lastErr ?? new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
      // the first failure decides: start-up does not wait for Redis to come up
      conn.once('error', (err: Error) => { clearTimeout(timer); reject(err) })
      conn.connect().then(() => { clearTimeout(timer); resolve() }, (err: Error) => { clearTimeout(timer); reject(lastErr ?? err) })
    })
    await conn.ping()
  } catch (err) {
    conn.disconnect()
    const e = err as NodeJS.ErrnoException
    const why = e.code !== undefined && !e.message.includes(e.code) ? `${e.code} ${e.message}` : e.message
    throw new BrokerError('REDIS', `Error: cannot connect to Redis at ${redisLabel(c)} (cluster_redis, ${c.source}): ${why}.`, { cause: err })
  } finally {
    conn.off('error', onError)
  }
  return conn
}
