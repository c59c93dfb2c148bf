import { mkdirSync, existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { ClassicLevel } from 'classic-level'
import { BrokerError } from '../errors.js'
import type { PersistenceFactory } from './types.js'
import { groupCommit } from './group-commit.js'
import { keepRetainedInMemory } from './retained-cache.js'
import { replaceOutgoingQueue } from './outgoing-queue.js'
import { replaceIncomingPackets } from './incoming-packets.js'
import { PacketCodec } from './packet-codec.js'
import { checkLevelLayout } from './level-layout.js'

/** Directory of the LevelDB store inside persistence_location. */
export function storePath (location: string, file: string): string {
  return resolve(join(location, file))
}

/** Midge's own keys in the store share this prefix (aedes-persistence-level uses `retained:`, `outgoing:` ...). */
export const MIDGE_KEY_PREFIX = 'midge-'
const BOOT_KEY = 'midge-meta:boot'

/** The one-line message for a store LevelDB reports as corrupted, with the documented recovery command. */
export function corruptStoreError (path: string, detail: string, cause: unknown): BrokerError {
  return new BrokerError('STORE_CORRUPT', `Error: persistence store ${path} is corrupted (${detail}). Back it up, then run "midge store repair -c CONFIG" (see the README, durability).`, { cause })
}

/** LevelDB's code for a corrupted store, wherever classic-level put it (the error or its cause). */
export function isCorruption (err: unknown): string | undefined {
  const e = err as { code?: string, message?: string, cause?: { code?: string, message?: string } } | undefined
  if (e?.cause?.code === 'LEVEL_CORRUPTION') return e.cause.message ?? 'corruption'
  if (e?.code === 'LEVEL_CORRUPTION') return e.message ?? 'corruption'
  return undefined
}

export async function loadClassicLevel (): Promise<typeof ClassicLevel> {
  try {
    return (await import('classic-level')).ClassicLevel
  } catch (err) {
    throw new BrokerError('STORE_OPEN', `Error: the LevelDB store could not be loaded on this platform (${(err as Error).message}). Set "persistence false" to run in memory.`, { cause: err })
  }
}

/**
 * `persistence_sync true`: every write goes through with `{ sync: true }` (fsync before LevelDB reports it done), so
 * an acknowledged message also survives power loss, not only a crash of the process. A Proxy, not a subclass:
 * aedes-persistence-level calls `put`/`del`/`batch` on whatever db it is given.
 */
function syncWrites (db: ClassicLevel<string, Buffer>): ClassicLevel<string, Buffer> {
  type Opts = Record<string, unknown> | undefined
  return new Proxy(db, {
    get (target, prop) {
      if (prop === 'put') return (k: string, v: Buffer, o?: Opts) => target.put(k, v, { ...o, sync: true })
      if (prop === 'del') return (k: string, o?: Opts) => target.del(k, { ...o, sync: true })
      if (prop === 'batch') {
        return (ops?: unknown[], o?: Opts) => {
          if (ops !== undefined) return (target.batch as any)(ops, { ...o, sync: true })
          const chained = target.batch()
          const write = chained.write.bind(chained)
          chained.write = ((opts?: Opts) => write({ ...opts, sync: true })) as typeof chained.write
          return chained
        }
      }
      const v = Reflect.get(target, prop) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
    }
  })
}

/** `persistence true`: aedes-persistence-level on classic-level (LevelDB) under persistence_location. */
export const levelBackend: PersistenceFactory = async (cfg, log) => {
  // before anything is read or written: Midge reads and writes the store's own layout (level-layout.ts)
  checkLevelLayout()
  const path = storePath(cfg.location, cfg.file)
  const Level = await loadClassicLevel()
  try {
    mkdirSync(path, { recursive: true })
  } catch (err) {
    throw new BrokerError('STORE_OPEN', `Error: cannot create persistence directory ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, { cause: err })
  }
  const raw = new Level<string, Buffer>(path, { valueEncoding: 'buffer' })
  try {
    await raw.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string, message?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new BrokerError('STORE_LOCKED', `Error: persistence store ${path} is locked: another Midge is using it.`, { cause: err })
    }
    const corrupt = isCorruption(err)
    if (corrupt !== undefined) throw corruptStoreError(path, corrupt, err)
    throw new BrokerError('STORE_OPEN', `Error: cannot open persistence store ${path}: ${cause?.message ?? (err as Error).message}.`, { cause: err })
  }
  // one LevelDB batch per event-loop turn for every writer of the store (aedes' and Midge's), see group-commit.ts
  const { db, group } = groupCommit(cfg.sync ? syncWrites(raw) : raw)
  let brokerId: string
  try {
    // a boot counter, so that every start's broker id sorts after the previous ones (see types.ts brokerId)
    const prev = await raw.get(BOOT_KEY)
    const boot = (prev === undefined ? 0 : Number(prev.toString())) + 1
    await raw.put(BOOT_KEY, Buffer.from(String(boot)), { sync: true })
    brokerId = `midge-${String(boot).padStart(10, '0')}-${randomBytes(4).toString('hex')}`
  } catch (err) {
    // the open error above is the one to report; closing only releases the lock
    await raw.close().catch(() => {})
    const corrupt = isCorruption(err)
    if (corrupt !== undefined) throw corruptStoreError(path, corrupt, err)
    throw new BrokerError('STORE_OPEN', `Error: cannot read persistence store ${path}: ${(err as Error).message}.`, { cause: err })
  }
  const { default: levelPersistence } = await import('aedes-persistence-level')
  // retained messages served from memory, written to LevelDB as before (retained-cache.ts)
  const p = await keepRetainedInMemory(levelPersistence(db), db)
  // a QoS 1/2 message for a persistent session encoded once, its id in one batch, nothing read back decoded again (outgoing-queue.ts)
  const codec = new PacketCodec()
  replaceOutgoingQueue(p, db, codec, key => group.lastWrite(key))
  // a QoS 2 message received, written and looked up the same way (incoming-packets.ts)
  replaceIncomingPackets(p, db, codec)
  log.info({ path, sync: cfg.sync }, 'persistence: LevelDB store opened')
  let closed = false
  return {
    name: 'level',
    aedes: p,
    db,
    brokerId,
    sync: cfg.sync,
    close: async () => {
      if (closed) return
      closed = true
      await group.barrier()
      // the raw database is closed next either way, and that is what flushes the data
      await (p as { destroy?: () => Promise<void> }).destroy?.().catch(() => {})
      if (raw.status === 'open') await raw.close()
    }
  }
}

/** `midge store repair`: LevelDB's RepairDB on the store of this config (the broker must not be running). */
export async function repairStore (location: string, file: string): Promise<string> {
  const path = storePath(location, file)
  if (!existsSync(path)) throw new BrokerError('STORE_OPEN', `Error: no persistence store at ${path}.`)
  const Level = await loadClassicLevel()
  // refuse while a broker holds the lock: repairing under a live broker would corrupt it for real
  const probe = new Level<string, Buffer>(path, { valueEncoding: 'buffer', createIfMissing: false })
  try {
    await probe.open()
    await probe.close()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') throw new BrokerError('STORE_LOCKED', `Error: persistence store ${path} is locked: stop the Midge using it first.`, { cause: err })
  }
  await Level.repair(path)
  return path
}
