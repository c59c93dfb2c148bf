/** MidgeStore's call-order step: writes resolve in the order aedes started them (LevelDB completes them in any order). */
import { test, expect } from 'vitest'
import { setTimeout as sleep } from 'node:timers/promises'
import type { StoreBackend } from '../../src/persistence/store.js'
import { collect, levelBackend, memoryBackend, newStore, publish } from './store-fixtures.js'

/** The real memory store, with each write held for the given time: a backend that completes out of order. */
function slowWrites (delays: number[]): StoreBackend {
  const inner = memoryBackend()
  const later = async <T>(write: () => Promise<T>): Promise<T> => { await sleep(delays.shift() ?? 0); return await write() }
  return {
    ...Object.fromEntries(['setup', 'outgoingStream', 'createRetainedStream'].map(m => [m, (...a: unknown[]) => (inner[m as keyof StoreBackend] as (...x: unknown[]) => unknown).apply(inner, a)])),
    storeRetained: (p) => later(() => inner.storeRetained(p)),
    outgoingEnqueueCombi: (s, p) => later(() => inner.outgoingEnqueueCombi(s, p)),
    outgoingUpdate: (c, p) => later(() => inner.outgoingUpdate(c, p))
  } as StoreBackend
}

async function resolutionOrder (inCallOrder: boolean): Promise<string[]> {
  const store = await newStore(slowWrites([40, 0, 15]), { inCallOrder })
  const done: string[] = []
  await Promise.all([
    store.storeRetained({ ...publish('r', 1), retain: true }).then(() => done.push('retained')),
    store.outgoingEnqueueCombi([{ clientId: 'c', qos: 1 }], publish('q', 2)).then(() => done.push('enqueued')),
    store.outgoingUpdate({ id: 'c' }, { ...publish('q', 2), messageId: 1 }).then(() => done.push('updated'))
  ])
  return done
}

test('writes that complete out of order resolve in call order with the step on, as they complete without it', async () => {
  expect(await resolutionOrder(false)).toEqual(['enqueued', 'updated', 'retained'])
  expect(await resolutionOrder(true)).toEqual(['retained', 'enqueued', 'updated'])
})

test('a failed write keeps its place: its rejection comes after the writes started before it', async () => {
  const store = await newStore(slowWrites([30, 0]), { inCallOrder: true })
  const done: string[] = []
  const first = store.storeRetained({ ...publish('r', 1), retain: true }).then(() => done.push('retained'))
  // not queued for 'c', and no accounting: the backend's rejection is aedes'
  const second = store.outgoingUpdate({ id: 'c' }, { ...publish('q', 9), messageId: 1 }).catch(() => done.push('update failed'))
  await Promise.all([first, second])
  expect(done).toEqual(['retained', 'update failed'])
})

test('LevelDB: 300 concurrent writes of mixed sizes resolve in the order they were started, and all are stored', async ({ onTestFinished }) => {
  const { backend, close } = await levelBackend()
  onTestFinished(close)
  const store = await newStore(backend, { inCallOrder: true })
  const done: number[] = []
  const writes: Array<Promise<unknown>> = []
  for (let i = 0; i < 300; i++) {
    // a large retained payload now and then: LevelDB takes longer for it than for the small writes after it
    const w = i % 3 === 0
      ? store.storeRetained({ ...publish(`r/${i}`, i, 'x'.repeat(i % 30 === 0 ? 256 * 1024 : 10)), retain: true })
      : store.outgoingEnqueueCombi([{ clientId: 'c', qos: 1 }], publish('q', i))
    writes.push(w.then(() => done.push(i)))
  }
  await Promise.all(writes)
  expect(done).toEqual([...Array(300).keys()])
  expect((await collect(store.outgoingStream({ id: 'c' }))).length).toBe(200)
})
