/** Retained messages from memory: the same answers and the same LevelDB contents as aedes-persistence-level's own. */
import { test, expect } from 'vitest'
import { ClassicLevel } from 'classic-level'
import levelPersistence from 'aedes-persistence-level'
import { keepRetainedInMemory } from '../../src/persistence/retained-cache.js'
import { tempDir } from '../helpers/start-broker.js'

async function openDb (onTestFinished: (fn: () => Promise<void> | void) => void): Promise<{ db: ClassicLevel<string, Buffer>, dir: string }> {
  const { dir, remove } = await tempDir('midge-retained-')
  onTestFinished(remove)
  const db = new ClassicLevel<string, Buffer>(dir, { valueEncoding: 'buffer' })
  await db.open()
  onTestFinished(async () => { if (db.status === 'open') await db.close() })
  return { db, dir }
}

interface Store {
  storeRetained (p: object): Promise<void>
  createRetainedStreamCombi (patterns: string[]): AsyncIterable<unknown>
  createRetainedStream (pattern: string): AsyncIterable<unknown>
}

async function all (it: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = []
  for await (const x of it) out.push(x)
  return out
}

async function dump (db: ClassicLevel<string, Buffer>): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = []
  for await (const [k, v] of db.iterator({ gte: 'retained:', lt: 'retained;' })) out.push([k, v.toString('hex')])
  return out
}

const packet = (topic: string, payload: string, extra: object = {}): object => ({
  cmd: 'publish', brokerId: 'b1', brokerCounter: 7, topic, payload: Buffer.from(payload), qos: 1, retain: true, dup: false, messageId: undefined, ...extra
})

const PATTERNS = [['#'], ['a/#'], ['a/+'], ['+/b', 'a/#'], ['$SYS/#'], ['é/#', 'z'], ['nothing'], ['+']]

test('answers, key order and stored values are those of aedes-persistence-level; a restart reads them back', async ({ onTestFinished }) => {
  const plain = await openDb(onTestFinished)
  const cached = await openDb(onTestFinished)
  const ref = levelPersistence(plain.db) as Store
  const mine = await keepRetainedInMemory(levelPersistence(cached.db), cached.db) as Store
  // topics whose UTF-8 order differs from UTF-16 order (U+FFFD vs U+1F600), $ topics, empty levels, v5 fields
  const writes = [
    packet('a/b', 'one'), packet('a/c', 'two'), packet('z', 'three', { qos: 0 }), packet('$SYS/x', 'sys'),
    packet('é/\uFFFD', 'bmp'), packet('é/\u{1F600}', 'astral'), packet('a//b', 'empty level'), packet('x/b', 'x'),
    packet('a/d', 'v5', { properties: { contentType: 'text/plain', userProperties: { k: ['v1', 'v2'] }, correlationData: Buffer.from('c') }, messageExpiry: 1e15 }),
    packet('a/b', 'replaced'), packet('z', ''), packet('never', '')
  ]
  for (const w of writes) {
    await ref.storeRetained(w)
    await mine.storeRetained(w)
  }
  expect(await dump(cached.db)).toEqual(await dump(plain.db))
  for (const p of PATTERNS) {
    expect(await all(mine.createRetainedStreamCombi(p)), p.join(',')).toEqual(await all(ref.createRetainedStreamCombi(p)))
  }
  expect(await all(mine.createRetainedStream('a/+'))).toEqual(await all(ref.createRetainedStream('a/+')))
  const topics = (await all(mine.createRetainedStream('#'))).map(p => (p as { topic: string }).topic)
  expect(topics).toEqual(['$SYS/x', 'a//b', 'a/b', 'a/c', 'a/d', 'x/b', 'é/\uFFFD', 'é/\u{1F600}'])

  // a new store on the same LevelDB (a restart) loads what is there
  const again = await keepRetainedInMemory(levelPersistence(cached.db), cached.db) as Store
  for (const p of PATTERNS) expect(await all(again.createRetainedStreamCombi(p))).toEqual(await all(ref.createRetainedStreamCombi(p)))
})

test('a write LevelDB refuses is not kept in memory', async ({ onTestFinished }) => {
  const { db } = await openDb(onTestFinished)
  const store = await keepRetainedInMemory(levelPersistence(db), db) as Store
  await store.storeRetained(packet('t', 'kept'))
  const put = db.put.bind(db)
  db.put = (() => Promise.reject(new Error('disk full'))) as unknown as typeof db.put
  await expect(store.storeRetained(packet('t', 'refused'))).rejects.toThrow('disk full')
  await expect(store.storeRetained(packet('u', 'refused'))).rejects.toThrow('disk full')
  db.put = put
  const got = (await all(store.createRetainedStream('#'))) as Array<{ topic: string, payload: Buffer }>
  expect(got.map(p => [p.topic, p.payload.toString()])).toEqual([['t', 'kept']])
})
