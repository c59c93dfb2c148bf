import type { PersistenceConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import type { PersistenceBackend } from './types.js'
import { memoryBackend } from './memory.js'
import { levelBackend } from './level.js'

/** LevelDB with `persistence true`, memory otherwise (a cluster node's Redis store is cluster/store.ts). */
export async function createPersistence (cfg: PersistenceConfig, log: Logger): Promise<PersistenceBackend> {
  return cfg.enabled ? levelBackend(cfg, log) : memoryBackend(cfg, log)
}

export type { PersistenceBackend } from './types.js'
