/** LevelDBs in temp dirs for unit tests of the store's modules, closed and removed when the test ends. */
import { ClassicLevel } from 'classic-level'
import levelPersistence from 'aedes-persistence-level'
import { groupCommit, type GroupCommit } from '../../src/persistence/group-commit.js'
import { PacketCodec } from '../../src/persistence/packet-codec.js'
import { tempDir } from './start-broker.js'

type OnFinished = (fn: () => Promise<void> | void) => void

/** A LevelDB in a temp dir. */
export async function openTempLevel (prefix: string, onTestFinished: OnFinished): Promise<ClassicLevel<string, Buffer>> {
  const { dir, remove } = await tempDir(prefix)
  onTestFinished(remove)
  const db = new ClassicLevel<string, Buffer>(dir, { valueEncoding: 'buffer' })
  await db.open()
  onTestFinished(async () => { if (db.status === 'open') await db.close() })
  return db
}

/** Every key and value (hex), in key order: what two stores are compared by. */
export async function dumpLevel (db: ClassicLevel<string, Buffer>): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = []
  for await (const [k, v] of db.iterator()) out.push([k, v.toString('hex')])
  return out
}

/**
 * aedes-persistence-level twice, for comparing a module of Midge's store with the store's own code: `plain` on a
 * LevelDB of its own, and on another (`rawDb`) behind Midge's group commit, `mineDb` with `mineStore`, the store
 * a test hands to the module it replaces methods of.
 */
interface StorePair {
  plainDb: ClassicLevel<string, Buffer>
  plain: unknown
  rawDb: ClassicLevel<string, Buffer>
  mineDb: ClassicLevel<string, Buffer>
  mineStore: unknown
  group: GroupCommit
  codec: PacketCodec
}

export async function storePair (prefix: string, onTestFinished: OnFinished): Promise<StorePair> {
  const plainDb = await openTempLevel(prefix, onTestFinished)
  const rawDb = await openTempLevel(prefix, onTestFinished)
  const { db: mineDb, group } = groupCommit(rawDb)
  return { plainDb, plain: levelPersistence(plainDb), rawDb, mineDb, mineStore: levelPersistence(mineDb), group, codec: new PacketCodec() }
}
