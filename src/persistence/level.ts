import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { BrokerError } from '../errors.js'
import type { PersistenceFactory } from './types.js'

/** Directory of the LevelDB store inside persistence_location. */
export function storePath (location: string, file: string): string {
  return resolve(join(location, file))
}

/** `persistence true`: aedes-persistence-level on classic-level (LevelDB) under persistence_location. */
export const levelBackend: PersistenceFactory = async (cfg, log) => {
  const path = storePath(cfg.location, cfg.file)
  let ClassicLevel: typeof import('classic-level').ClassicLevel
  try {
    ({ ClassicLevel } = await import('classic-level'))
  } catch (err) {
    throw new BrokerError('STORE_OPEN', `Error: the LevelDB store could not be loaded on this platform (${(err as Error).message}). Set "persistence false" to run in memory.`, { cause: err })
  }
  try {
    mkdirSync(path, { recursive: true })
  } catch (err) {
    throw new BrokerError('STORE_OPEN', `Error: cannot create persistence directory ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, { cause: err })
  }
  const db = new ClassicLevel<string, Buffer>(path, { valueEncoding: 'buffer' })
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string, message?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new BrokerError('STORE_LOCKED', `Error: persistence store ${path} is locked: another Midge is using it.`, { cause: err })
    }
    if (cause?.code === 'LEVEL_CORRUPTION') {
      throw new BrokerError('STORE_CORRUPT', `Error: persistence store ${path} is corrupted (${cause.message ?? 'unknown'}). Back it up, then run "midge store repair -c CONFIG".`, { cause: err })
    }
    throw new BrokerError('STORE_OPEN', `Error: cannot open persistence store ${path}: ${cause?.message ?? (err as Error).message}.`, { cause: err })
  }
  const { default: levelPersistence } = await import('aedes-persistence-level')
  const p = levelPersistence(db)
  log.info({ path }, 'persistence: LevelDB store opened')
  let closed = false
  return {
    name: 'level',
    aedes: p,
    close: async () => {
      if (closed) return
      closed = true
      await (p as { destroy?: () => Promise<void> }).destroy?.()
      if (db.status === 'open') await db.close()
    }
  }
}
