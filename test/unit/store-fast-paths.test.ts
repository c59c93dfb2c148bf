/** MidgeStore's fast-path step: QoS 2 lookups without a stack, PUBREL deletes settled, retained-stream errors logged. */
import { test, expect } from 'vitest'
import { Readable, PassThrough } from 'node:stream'
import { MidgeStore, type StoreBackend } from '../../src/persistence/store.js'
import { memoryBackend, newStore, recordingLog } from './store-fixtures.js'

test('a QoS 2 lookup miss still rejects with the store\'s error, but without capturing a stack', async () => {
  const raw = memoryBackend()
  const client = { id: 'c1' }
  const plain = await raw.incomingGetPacket(client, { messageId: 7 }).catch((e: Error) => e)
  expect((plain as Error).stack?.split('\n').length).toBeGreaterThan(1) // the cost being removed

  const p = await newStore(raw)
  const err = await p.incomingGetPacket(client, { messageId: 7 }).catch((e: Error) => e)
  expect(err).toBeInstanceOf(Error)
  expect((err as Error).message).toBe('no such packet')
  expect((err as Error).stack?.split('\n')).toEqual(['Error: no such packet'])
  expect(Error.stackTraceLimit).toBe(10) // restored

  await p.incomingStorePacket(client, { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 2, retain: false, messageId: 7 })
  const hit = await p.incomingGetPacket(client, { messageId: 7 })
  expect(hit.messageId).toBe(7)
})

test('methods are the class\'s own, the same function on every access; aedes\' AsyncFunction check on setup passes', async () => {
  const p = await newStore(memoryBackend())
  expect(p.incomingStorePacket).toBe(p.incomingStorePacket)
  expect(p.setup.constructor.name).toBe('AsyncFunction')
  // every method aedes 2.0.0-beta.1 calls is a method of the class, none reached through a Proxy
  for (const name of ['setup', 'delWill', 'streamWill', 'cleanSubscriptions', 'storeRetained', 'subscriptionsByTopic',
    'outgoingEnqueueCombi', 'outgoingUpdate', 'outgoingClearMessageId', 'outgoingEnqueue', 'outgoingStream',
    'subscriptionsByClient', 'putWill', 'incomingGetPacket', 'incomingStorePacket', 'incomingDelPacket',
    'addSubscriptions', 'createRetainedStreamCombi', 'removeSubscriptions']) {
    expect(Object.hasOwn(MidgeStore.prototype, name), name).toBe(true)
  }
})

test('a store method that throws synchronously keeps the limit restored', async () => {
  const p = await newStore({ setup: async () => {}, incomingGetPacket () { throw new TypeError('sync') } } as unknown as StoreBackend)
  expect(() => p.incomingGetPacket({ id: 'c' }, { messageId: 1 })).toThrow('sync')
  expect(Error.stackTraceLimit).toBe(10)
})

test('a retained-message stream that fails is not an unhandled error: aedes pipes it without passing errors on', async () => {
  const log = recordingLog()
  const p = await newStore({
    setup: async () => {},
    createRetainedStreamCombi () {
      return new Readable({ objectMode: true, read () { this.destroy(Object.assign(new Error('Iterator is not open'), { code: 'LEVEL_ITERATOR_NOT_OPEN' })) } })
    }
  } as unknown as StoreBackend, { log })
  const stream = p.createRetainedStreamCombi(['#'])
  // as aedes' subscribe handler does: pipe, no error handling of its own
  stream.pipe(new PassThrough({ objectMode: true }))
  await new Promise(resolve => stream.once('close', resolve))
  expect(log.lines.map(l => [l.level, (l.obj as { err: string }).err])).toEqual([['warn', 'Iterator is not open']])
})

test('a second PUBREL for the same id: the memory store\'s failed delete is settled (aedes uses .finally) and logged', async () => {
  const log = recordingLog()
  const p = await newStore(memoryBackend(), { log })
  const client = { id: 'c2' }
  await p.incomingStorePacket(client, { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 2, retain: false, messageId: 3 })
  await expect(p.incomingDelPacket(client, { messageId: 3 })).resolves.toBeUndefined()
  await expect(p.incomingDelPacket(client, { messageId: 3 })).resolves.toBeUndefined()
  expect(log.lines.map(l => l.level)).toEqual(['debug'])
})
