import memoryPersistence from 'aedes-persistence'
import type { PersistenceFactory } from './types.js'

/** `persistence false`: aedes' in-memory store; nothing survives a restart. */
export const memoryBackend: PersistenceFactory = async () => {
  const p = memoryPersistence()
  return {
    name: 'memory',
    aedes: p,
    sync: false,
    close: async () => { await (p as { destroy?: () => Promise<void> }).destroy?.() }
  }
}
