/**
 * What the Broker adds to aedes for a cluster node: `clusterAedesOptions` (routing, heartbeat) for
 * `Aedes.createBroker`, the Redis gate as a stage of `authenticate` and of `authorizePublish` (`gateAuthenticate`,
 * `gatePublish`, put in order by broker/hook-stages.ts), and `attachCluster` (journal sweep, disconnecting clients
 * when Redis is lost) after it.
 */
import { connectedClients } from '../aedes/internals.js'
import type { Aedes, Client, PublishPacket } from 'aedes'
import type { Logger } from '../logging/logger.js'
import { HEARTBEAT_MS, type ClusterNode } from './node.js'

type Cb = (err?: Error | null) => void
type AuthorizePublish = (client: Client | null, packet: PublishPacket, cb: Cb) => void
type Authenticate = (client: Client, username: Readonly<string | undefined>, password: Readonly<Buffer | undefined>, cb: (err: (Error & { returnCode: number }) | null, ok: boolean | null) => void) => void
/** What the gates read of a node: whether Redis answers (health.ts). */
export interface RedisGate { readonly health: { readonly up: boolean } }

const NO_REDIS = 'Redis is unreachable'

export interface ClusterOptions {
  mq: unknown
  heartbeatInterval: number
}

export function clusterAedesOptions (node: ClusterNode): ClusterOptions {
  return {
    mq: node.mq,
    // a node that stops beating for 3 intervals is gone: its clients' wills fire on the other nodes
    heartbeatInterval: HEARTBEAT_MS
  }
}

/*
 * While Redis is down (health.ts): CONNECT gets CONNACK 3 (server unavailable) and a PUBLISH closes the client's
 * connection before any PUBACK/PUBREC, so that the client keeps its QoS 1/2 message and sends it again later.
 */

export function gateAuthenticate (node: RedisGate, next: Authenticate): Authenticate {
  const health = node.health
  return (client, username, password, cb) => {
    if (!health.up) { cb(Object.assign(new Error(`${NO_REDIS}: server unavailable`), { returnCode: 3 }), null); return }
    next(client, username, password, cb)
  }
}

export function gatePublish (node: RedisGate, next: AuthorizePublish): AuthorizePublish {
  const health = node.health
  return (client, packet, cb) => {
    // client === null: a will or a $SYS message of this node, which cannot reach anyone either
    if (!health.up && client !== null) { cb(new Error(`${NO_REDIS}: publish refused`)); return }
    next(client, packet, cb)
  }
}

export function attachCluster (node: ClusterNode, aedes: Aedes, replay: () => Promise<void>, log: Logger): void {
  const clients = connectedClients(aedes)
  aedes.once('closed', () => node.health.close())
  node.health.on('disconnect-clients', () => {
    const all = Object.values(clients)
    if (all.length === 0) return
    log.error({ redis: node.label, clients: all.length }, `Redis still unreachable: closing ${all.length} client connection(s); they can reconnect once it is back.`)
    for (const c of all) c.close()
  })
  node.startSweep(replay)
}
