/**
 * A packet the store does not hold, told apart from a failure without reading the error's text: MidgeStore's
 * `outgoingUpdate` (a live delivery to a persistent session whose message is not queued for it) and the session
 * index's `incomingGetPacket` (a new QoS 2 message).
 */
import { test, expect } from 'vitest'
import { isNoSuchPacket, NoSuchPacketError } from '../../src/persistence/no-such-packet.js'
import type { StoreBackend } from '../../src/persistence/store.js'
import { accounting, backendOf, collect, levelBackend, memoryBackend, newStore, publish, recordingLog } from './store-fixtures.js'

const live = { id: 'live', clean: false }

for (const kind of ['memory', 'level'] as const) {
  test(`${kind}: outgoingUpdate of a message not queued for the client queues it and gives it its packet id`, async ({ onTestFinished }) => {
    const backend = await backendOf(kind, onTestFinished)
    const { acct } = accounting({ maxMessages: 10 })
    const store = await newStore(backend, { accounting: acct, inCallOrder: kind === 'level' })
    // the backend itself refuses it
    await expect(backend.outgoingUpdate(live, { ...publish('t', 1), messageId: 3 })).rejects.toBeInstanceOf(Error)

    await expect(store.outgoingUpdate(live, { ...publish('t', 1), messageId: 3 })).resolves.toBeUndefined()
    expect((await collect(store.outgoingStream(live))).map(p => [p.brokerCounter, p.messageId])).toEqual([[1, 3]])
    expect(acct.queued(live.id).count).toBe(1)
    // and its PUBACK finds it
    expect((await store.outgoingClearMessageId(live, { messageId: 3 }))?.brokerCounter).toBe(1)
    expect(acct.queued(live.id).count).toBe(0)
  })
}

/** The memory store, whose outgoingUpdate fails with `failure` the first `times` calls (before touching anything). */
function failingUpdates (failure: () => Error, times: number): { backend: StoreBackend, asked: () => number } {
  const inner = memoryBackend()
  let calls = 0
  let streams = 0
  const backend = Object.create(inner) as StoreBackend
  backend.setup = async (b) => { await inner.setup(b) }
  backend.outgoingUpdate = async (c, p) => { if (calls++ < times) throw failure(); await inner.outgoingUpdate(c, p) }
  backend.outgoingStream = (c) => { streams++; return inner.outgoingStream(c) }
  backend.outgoingEnqueue = (s, p) => inner.outgoingEnqueue(s, p)
  return { backend, asked: () => streams }
}

test('the miss is recognised whatever the error says: the backend is asked whether it holds the message', async () => {
  const { backend, asked } = failingUpdates(() => new Error('some other words'), 1)
  const { acct } = accounting()
  const store = await newStore(backend, { accounting: acct })
  await expect(store.outgoingUpdate(live, { ...publish('t', 1), messageId: 4 })).resolves.toBeUndefined()
  expect(asked()).toBe(1)
  expect((await collect(store.outgoingStream(live))).map(p => p.messageId)).toEqual([4])
})

test('Midge\'s typed NoSuchPacketError is a miss without asking the backend', async () => {
  const { backend, asked } = failingUpdates(() => new NoSuchPacketError(), 1)
  const store = await newStore(backend, { accounting: accounting().acct })
  await expect(store.outgoingUpdate(live, { ...publish('t', 1), messageId: 4 })).resolves.toBeUndefined()
  expect(asked()).toBe(0)
  expect((await collect(store.outgoingStream(live))).map(p => p.messageId)).toEqual([4])
})

test('an update that fails although the message is held is a failure, even when it says "no such packet": tried once more, then aedes gets the error', async () => {
  const { backend } = failingUpdates(() => new Error('no such packet'), 2)
  const store = await newStore(backend, { accounting: accounting().acct })
  await store.outgoingEnqueue({ clientId: live.id, qos: 1 }, publish('t', 1))
  await expect(store.outgoingUpdate(live, { ...publish('t', 1), messageId: 4 })).rejects.toThrow('no such packet')
  // not queued a second time
  expect((await collect(store.outgoingStream(live))).length).toBe(1)

  const once = failingUpdates(() => new Error('busy'), 1)
  const retried = await newStore(once.backend, { accounting: accounting().acct })
  await retried.outgoingEnqueue({ clientId: live.id, qos: 1 }, publish('t', 1))
  await expect(retried.outgoingUpdate(live, { ...publish('t', 1), messageId: 4 })).resolves.toBeUndefined()
  expect((await collect(retried.outgoingStream(live))).map(p => p.messageId)).toEqual([4])
})

test('a miss for a client whose queue is full: the message goes out untracked, the connection is not failed', async () => {
  const { acct, stats } = accounting({ maxMessages: 1 })
  const log = recordingLog()
  const store = await newStore(memoryBackend(), { accounting: acct, log })
  await store.outgoingEnqueue({ clientId: live.id, qos: 1 }, publish('t', 1))
  await expect(store.outgoingUpdate(live, { ...publish('t', 2), messageId: 5 })).resolves.toBeUndefined()
  expect(stats.droppedQueueFull).toBe(1)
  expect((await collect(store.outgoingStream(live))).map(p => p.brokerCounter)).toEqual([1])
})

test('without queue limits (a cluster\'s shared store) the backend\'s rejection is aedes\', as it was', async () => {
  const store = await newStore(memoryBackend(), { accounting: undefined })
  await expect(store.outgoingUpdate(live, { ...publish('t', 1), messageId: 3 })).rejects.toBeInstanceOf(Error)
})

test('LevelDB: a QoS 2 lookup of an id the session index does not hold is refused with NoSuchPacketError, without a stack', async ({ onTestFinished }) => {
  const { backend, close } = await levelBackend()
  onTestFinished(close)
  const store = await newStore(backend, { inCallOrder: true })
  const c = { id: 'q2' }
  const err = await store.incomingGetPacket(c, { messageId: 8 }).then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(NoSuchPacketError)
  expect(isNoSuchPacket(err)).toBe(true)
  expect((err as NoSuchPacketError).code).toBe('MIDGE_NO_SUCH_PACKET')
  expect((err as Error).stack?.split('\n').length).toBe(1)

  await store.incomingStorePacket(c, { ...publish('t', 1, 'p', 2), messageId: 8 })
  expect((await store.incomingGetPacket(c, { messageId: 8 })).topic).toBe('t')
  await store.incomingDelPacket(c, { messageId: 8 })
  expect(isNoSuchPacket(await store.incomingGetPacket(c, { messageId: 8 }).then(() => undefined, (e: unknown) => e))).toBe(true)

  // a clean start drops the client's unreleased QoS 2 messages: the index forgets them too
  await store.incomingStorePacket(c, { ...publish('t', 2, 'p', 2), messageId: 9 })
  await store.cleanIncoming(c)
  expect(isNoSuchPacket(await store.incomingGetPacket(c, { messageId: 9 }).then(() => undefined, (e: unknown) => e))).toBe(true)
})

test('isNoSuchPacket reads the type or the code, never the message', () => {
  expect(isNoSuchPacket(new Error('no such packet'))).toBe(false)
  expect(isNoSuchPacket(Object.assign(new Error('anything'), { code: 'MIDGE_NO_SUCH_PACKET' }))).toBe(true)
  expect(isNoSuchPacket(undefined)).toBe(false)
})
