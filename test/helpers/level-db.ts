/** A LevelDB in a temp dir for unit tests of the store's modules, closed and removed when the test ends. */
import { ClassicLevel } from 'classic-level'
import { tempDir } from './start-broker.js'

type OnFinished = (fn: () => Promise<void> | void) => void

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
