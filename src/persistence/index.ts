import type { ClusterConfig, PersistenceConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import type { PersistenceBackend } from './types.js'
import { memoryBackend } from './memory.js'
import { levelBackend } from './level.js'
import { redisBackend } from './redis.js'

/** `cluster_redis` wins: a cluster node's store is Redis, shared with the other nodes. */
export async function createPersistence (cfg: PersistenceConfig, log: Logger, cluster?: ClusterConfig): Promise<PersistenceBackend> {
  if (cluster !== undefined) return redisBackend(cluster, log)
  return cfg.enabled ? levelBackend(cfg, log) : memoryBackend(cfg, log)
}

export type { PersistenceBackend } from './types.js'
