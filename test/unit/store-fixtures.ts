/** What the MidgeStore unit tests share: real backends (aedes-persistence in memory, LevelDB in a temp dir). */
import memoryPersistence from 'aedes-persistence'
import { ClassicLevel } from 'classic-level'
import type { Readable } from 'node:stream'
import { silentLogger } from '../../src/logging/logger.js'
import { QueueAccounting, newStats, type PersistenceStats, type QueueLimits } from '../../src/persistence/limits.js'
import { skipEmptySessions } from '../../src/persistence/session-index.js'
import { MidgeStore, type MidgeStoreOptions, type StoreBackend, type StoreLog, type StorePacket } from '../../src/persistence/store.js'
import { tempDir } from '../helpers/start-broker.js'

export function memoryBackend (): StoreBackend {
  return memoryPersistence() as unknown as StoreBackend
}

/** aedes-persistence-level on a fresh LevelDB, behind the session index, as the Broker builds it. */
export async function levelBackend (): Promise<{ backend: StoreBackend, close: () => Promise<void> }> {
  const { dir, remove } = await tempDir('midge-store-')
  const db = new ClassicLevel<string, Buffer>(dir, { valueEncoding: 'buffer' })
  await db.open()
  const { default: levelPersistence } = await import('aedes-persistence-level')
  const backend = skipEmptySessions(levelPersistence(db) as unknown as StoreBackend, db).persistence
  return { backend, close: async () => { await db.close(); await remove() } }
}

/** A backend of that kind for one test; a LevelDB one is closed and removed when the test finishes. */
export async function backendOf (kind: 'memory' | 'level', onFinished: (fn: () => Promise<void>) => void): Promise<StoreBackend> {
  if (kind === 'memory') return memoryBackend()
  const l = await levelBackend()
  onFinished(l.close)
  return l.backend
}

export interface LogLine { level: 'debug' | 'warn', obj: object, msg: string }
export function recordingLog (): StoreLog & { lines: LogLine[] } {
  const lines: LogLine[] = []
  return {
    lines,
    debug (obj, msg) { lines.push({ level: 'debug', obj, msg }) },
    warn (obj, msg) { lines.push({ level: 'warn', obj, msg }) }
  }
}

export function accounting (limits: Partial<QueueLimits> = {}): { acct: QueueAccounting, stats: PersistenceStats } {
  const stats = newStats()
  const acct = new QueueAccounting({ maxMessages: 0, maxInflight: 0, maxBytes: 0, ...limits }, stats, silentLogger())
  return { acct, stats }
}

/** A MidgeStore with no window (every stored packet admitted at once) unless the options say otherwise. */
export async function newStore (backend: StoreBackend, opts: Partial<MidgeStoreOptions> = {}): Promise<MidgeStore> {
  const store = new MidgeStore({
    backend,
    accounting: undefined,
    inCallOrder: false,
    admitStored: (_client, _packet, go) => go(),
    log: recordingLog(),
    ...opts
  })
  await store.setup({ id: 'broker-1' })
  return store
}

export const publish = (topic: string, counter: number, payload = 'p', qos = 1): StorePacket =>
  ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, brokerId: 'b', brokerCounter: counter })

export async function collect (s: Readable): Promise<StorePacket[]> {
  const out: StorePacket[] = []
  for await (const x of s) out.push(x as StorePacket)
  return out
}
