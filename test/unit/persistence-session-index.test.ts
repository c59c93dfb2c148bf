/**
 * The session index on aedes-persistence-level and a real LevelDB: a client with nothing stored is answered without
 * a store read; whatever was stored, in this run or the one before, is still read from the store.
 */
import { test, expect } from 'vitest'
import { ClassicLevel } from 'classic-level'
import { Readable } from 'node:stream'
import { skipEmptySessions } from '../../src/persistence/session-index.js'
import type { StoreBackend } from '../../src/persistence/store.js'
import { tempDir } from '../helpers/start-broker.js'

interface Store {
  setup (broker: unknown): Promise<void>
  addSubscriptions (c: { id: string }, subs: unknown[]): Promise<void>
  subscriptionsByClient (c: { id: string }): Promise<Array<{ topic: string }>>
  cleanSubscriptions (c: { id: string }): Promise<void>
  putWill (c: { id: string }, packet: unknown): Promise<void>
  getWill (c: { id: string }): Promise<{ topic: string } | undefined>
  delWill (c: { id: string }): Promise<{ topic: string } | undefined>
  outgoingEnqueueCombi (subs: Array<{ clientId: string }>, packet: unknown): Promise<void>
  outgoingStream (c: { id: string }): Readable
  outgoingClearMessageId (c: { id: string }, p: { messageId: number }): Promise<unknown>
  incomingStorePacket (c: { id: string }, p: unknown): Promise<void>
  incomingGetPacket (c: { id: string }, p: { messageId: number }): Promise<{ topic: string }>
  incomingDelPacket (c: { id: string }, p: { messageId: number }): Promise<void>
  cleanIncoming (c: { id: string }): Promise<void>
}

async function open (dir: string): Promise<{ db: ClassicLevel<string, Buffer>, store: Store, reads: string[] }> {
  const db = new ClassicLevel<string, Buffer>(dir, { valueEncoding: 'buffer' })
  await db.open()
  const { default: levelPersistence } = await import('aedes-persistence-level')
  const inner = levelPersistence(db) as unknown as Store
  // every call that reaches aedes-persistence-level
  const reads: string[] = []
  const spied = new Proxy(inner, {
    get (target, prop) {
      const v = Reflect.get(target, prop) as unknown
      if (typeof v !== 'function') return v
      return (...args: unknown[]) => { reads.push(String(prop)); return (v as (...a: unknown[]) => unknown).apply(target, args) }
    }
  })
  // the spy forwards every method of the real store
  const { persistence } = skipEmptySessions(spied as unknown as StoreBackend, db)
  const store = persistence as unknown as Store
  await store.setup({ id: 'broker-1' })
  return { db, store, reads }
}

async function collect (s: Readable): Promise<unknown[]> {
  const out: unknown[] = []
  for await (const x of s) out.push(x)
  return out
}

const packet = (topic: string, counter: number): Record<string, unknown> =>
  ({ cmd: 'publish', topic, payload: Buffer.from('p'), qos: 1, retain: false, dup: false, brokerId: 'b', brokerCounter: counter })

test('a client with nothing stored costs no store call; subscriptions, a will and a queue are read from the store, also after a restart', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-index-')
  onTestFinished(remove)
  let { db, store, reads } = await open(dir)
  const fresh = { id: 'fresh:ü' }
  reads.length = 0
  expect(await store.subscriptionsByClient(fresh)).toEqual([])
  await store.cleanSubscriptions(fresh)
  expect(await store.getWill(fresh)).toBeUndefined()
  expect(await store.delWill(fresh)).toBeUndefined()
  expect(await collect(store.outgoingStream(fresh))).toEqual([])
  expect(await store.outgoingClearMessageId(fresh, { messageId: 1 })).toBeUndefined()
  expect(reads).toEqual([])

  const kept = { id: 'kept:ü' }
  await store.addSubscriptions(kept, [{ topic: 'a/#', qos: 1 }])
  await store.putWill(kept, { topic: 'will/kept', payload: Buffer.from('w'), qos: 0, retain: false })
  await store.outgoingEnqueueCombi([{ clientId: kept.id }], packet('a/1', 1))
  reads.length = 0
  expect((await store.subscriptionsByClient(kept)).map(s => s.topic)).toEqual(['a/#'])
  expect((await store.getWill(kept))?.topic).toBe('will/kept')
  expect(await collect(store.outgoingStream(kept))).toHaveLength(1)
  expect(reads).toEqual(['subscriptionsByClient', 'getWill', 'outgoingStream'])
  await db.close()

  // a new process: the index comes from the store's keys
  ;({ db, store, reads } = await open(dir))
  onTestFinished(() => db.close())
  reads.length = 0
  expect((await store.subscriptionsByClient(kept)).map(s => s.topic)).toEqual(['a/#'])
  expect((await store.delWill(kept))?.topic).toBe('will/kept')
  expect((await collect(store.outgoingStream(kept))).map(p => (p as { topic: string }).topic)).toEqual(['a/1'])
  expect(await store.subscriptionsByClient(fresh)).toEqual([])
  expect(await collect(store.outgoingStream(fresh))).toEqual([])
  expect(reads).toEqual(['subscriptionsByClient', 'delWill', 'outgoingStream'])
})

test('QoS 2: only the message ids stored for a client are looked up in the store, also after a restart; the others are refused as the store refuses them', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-index-')
  onTestFinished(remove)
  let { db, store, reads } = await open(dir)
  const c = { id: 'pub:ü' }
  await store.incomingStorePacket(c, { ...packet('q/2', 1), qos: 2, messageId: 7 })
  reads.length = 0
  expect((await store.incomingGetPacket(c, { messageId: 7 })).topic).toBe('q/2')
  await expect(store.incomingGetPacket(c, { messageId: 8 })).rejects.toThrow('no such packet')
  await expect(store.incomingGetPacket({ id: 'other' }, { messageId: 7 })).rejects.toThrow('no such packet')
  expect(reads).toEqual(['incomingGetPacket'])
  await db.close()

  ;({ db, store, reads } = await open(dir))
  onTestFinished(() => db.close())
  reads.length = 0
  expect((await store.incomingGetPacket(c, { messageId: 7 })).topic).toBe('q/2')
  await store.incomingDelPacket(c, { messageId: 7 })
  await expect(store.incomingGetPacket(c, { messageId: 7 })).rejects.toThrow('no such packet')
  expect(reads).toEqual(['incomingGetPacket', 'incomingDelPacket'])
  // the store agrees: nothing is left under that id
  await expect((levelRead(db))).resolves.toEqual([])
})

test('a clean start clears the stored QoS 2 messages of a client that has some, also after a restart, and reads nothing for the others', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-index-')
  onTestFinished(remove)
  let { db, store, reads } = await open(dir)
  const c = { id: 'pub:2' }
  await store.incomingStorePacket(c, { ...packet('q/2', 1), qos: 2, messageId: 3 })
  await db.close()
  ;({ db, store, reads } = await open(dir))
  onTestFinished(() => db.close())
  reads.length = 0
  await store.cleanIncoming({ id: 'never' })
  expect(reads).toEqual([])
  await store.cleanIncoming(c)
  expect(reads).toEqual(['cleanIncoming'])
  await expect((levelRead(db))).resolves.toEqual([])
  await expect(store.incomingGetPacket(c, { messageId: 3 })).rejects.toThrow('no such packet')
  // once cleared, the next clean start reads nothing; a new QoS 2 message is cleared again
  await store.cleanIncoming(c)
  expect(reads).toEqual(['cleanIncoming'])
  await store.incomingStorePacket(c, { ...packet('q/2', 1), qos: 2, messageId: 4 })
  await store.cleanIncoming(c)
  await expect((levelRead(db))).resolves.toEqual([])
})

async function levelRead (db: ClassicLevel<string, Buffer>): Promise<string[]> {
  const keys: string[] = []
  for await (const k of db.keys({ gte: 'incoming:', lt: 'incoming;' })) keys.push(k)
  return keys
}
