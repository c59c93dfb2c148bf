/**
 * `cluster_redis`: aedes-persistence-redis, shared by every node on that Redis.
 *
 * What Durability (persistence/durability.ts) does around it:
 *   - the QoS 1 journal: kept, in Redis (cluster/journal.ts). aedes acknowledges a QoS 1 publish before it stores
 *     it, with this store as with LevelDB, so the journal is still needed; in LevelDB it would die with the node;
 *   - queue limits: bypassed (`shared`). They count each client's stored queue in this process's memory, but in a
 *     cluster the queue is filled on one node and drained on another: the counts would only grow, and the node
 *     would drop messages for a client whose queue is empty. Live delivery limits (slow consumers) still apply;
 *   - session expiry (persistent_client_expiration): not available yet (it keeps its last-seen times in LevelDB);
 *     a warning says so at start-up.
 */
import type { ClusterConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import { ClusterNode } from './node.js'
import type { PersistenceBackend } from '../persistence/types.js'

/** The store of a cluster node, and the node it belongs to. */
export interface ClusterBackend extends PersistenceBackend {
  readonly cluster: ClusterNode
}

export async function redisBackend (c: ClusterConfig, log: Logger): Promise<ClusterBackend> {
  const node = await ClusterNode.connect(c, log)
  const store = await node.createStore()
  let closed = false
  return {
    name: 'redis',
    aedes: store,
    brokerId: node.brokerId,
    sync: false,
    shared: true,
    journal: node.journal,
    cluster: node,
    close: async () => {
      if (closed) return
      closed = true
      await node.close()
      // the connection is dropped on the next line either way; Redis has written every command it answered
      await (store as { destroy?: () => Promise<void> }).destroy?.().catch(() => {})
      node.conns.store.disconnect()
    }
  }
}
