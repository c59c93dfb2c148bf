/** MidgeStore's DUP-marking step: the stored queue a returning session reads, on the real memory store and LevelDB. */
import { test, expect } from 'vitest'
import type { AdmitStored, StorePacket } from '../../src/persistence/store.js'
import { backendOf, collect, memoryBackend, newStore, publish } from './store-fixtures.js'

const session = { id: 'back', clean: false }
const sub = { clientId: session.id, topic: 't', qos: 1 }

for (const kind of ['memory', 'level'] as const) {
  test(`${kind}: a queued message reads without DUP; read again after it was sent (it has a packet id), it has DUP=1`, async ({ onTestFinished }) => {
    const backend = await backendOf(kind, onTestFinished)
    const store = await newStore(backend)
    await store.outgoingEnqueueCombi([sub], publish('t', 1))
    const first = await collect(store.outgoingStream(session))
    expect(first.map(p => [p.brokerCounter, p.dup ?? false])).toEqual([[1, false]])

    // aedes gives it a packet id as it writes it (outgoingUpdate); the client goes before it acknowledges
    await store.outgoingUpdate(session, { ...publish('t', 1), messageId: 42 })
    const second = await collect(store.outgoingStream(session))
    expect(second.map(p => [p.brokerCounter, p.messageId, p.dup])).toEqual([[1, 42, true]])
  })
}

test('a PUBREL in the queue is not marked; a clean session\'s stream is the backend\'s own, not windowed', async () => {
  const seen: StorePacket[] = []
  const admitStored: AdmitStored = (_c, p, go) => { seen.push(p); go() }
  const store = await newStore(memoryBackend(), { admitStored })
  await store.outgoingEnqueue(sub, publish('t', 1, 'p', 2))
  // sent with id 5, PUBREC came: aedes stores the PUBREL in its place (lib/handlers/pubrec.js)
  await store.outgoingUpdate(session, { ...publish('t', 1, 'p', 2), messageId: 5 })
  await store.outgoingUpdate(session, { cmd: 'pubrel', messageId: 5 })
  const read = await collect(store.outgoingStream(session))
  expect(read.map(p => [p.cmd, p.dup ?? false])).toEqual([['pubrel', false]])
  expect(seen.length).toBe(1)

  seen.length = 0
  const clean = await collect(store.outgoingStream({ id: session.id, clean: true }))
  expect(clean.length).toBe(1)
  expect(seen).toEqual([])
})

test('each stored message waits for the window (admitStored); a connection that closes meanwhile ends the stream with its error', async () => {
  const waiting: Array<(err?: Error) => void> = []
  const store = await newStore(memoryBackend(), { admitStored: (_c, _p, go) => { waiting.push(go) } })
  for (let i = 1; i <= 3; i++) await store.outgoingEnqueue(sub, publish('t', i))
  const stream = store.outgoingStream(session)
  const got: number[] = []
  stream.on('data', (p: StorePacket) => got.push(p.brokerCounter ?? 0))
  await new Promise(resolve => setImmediate(resolve))
  expect(got).toEqual([])
  expect(waiting.length).toBe(1)
  waiting.shift()!()
  await new Promise(resolve => setImmediate(resolve))
  expect(got).toEqual([1])
  const failed = new Promise<Error>(resolve => stream.once('error', resolve))
  waiting.shift()!(new Error('client closed'))
  expect((await failed).message).toBe('client closed')
  expect(got).toEqual([1])
})
