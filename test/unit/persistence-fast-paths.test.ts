import { test, expect } from 'vitest'
import memoryPersistence from 'aedes-persistence'
import { persistenceFastPaths } from '../../src/broker/persistence-fast-paths.js'

interface Store {
  setup: (broker: unknown) => Promise<void>
  incomingStorePacket: (client: { id: string }, packet: object) => Promise<void>
  incomingGetPacket: (client: { id: string }, packet: { messageId: number }) => Promise<{ messageId: number }>
}

test('a QoS 2 lookup miss still rejects with the store\'s error, but without capturing a stack', async () => {
  const raw = memoryPersistence() as unknown as Store
  const client = { id: 'c1' }
  const plain = await raw.incomingGetPacket(client, { messageId: 7 }).catch((e: Error) => e)
  expect((plain as Error).stack?.split('\n').length).toBeGreaterThan(1) // the cost being removed

  const p = persistenceFastPaths(raw, () => {})
  const err = await p.incomingGetPacket(client, { messageId: 7 }).catch((e: Error) => e)
  expect(err).toBeInstanceOf(Error)
  expect((err as Error).message).toBe('no such packet')
  expect((err as Error).stack?.split('\n')).toEqual(['Error: no such packet'])
  expect(Error.stackTraceLimit).toBe(10) // restored

  await p.incomingStorePacket(client, { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 2, retain: false, messageId: 7 })
  const hit = await p.incomingGetPacket(client, { messageId: 7 })
  expect(hit.messageId).toBe(7)
})

test('methods are bound once and reused; aedes\' AsyncFunction check on setup still passes', () => {
  const p = persistenceFastPaths(memoryPersistence() as unknown as Store, () => {})
  expect(p.incomingStorePacket).toBe(p.incomingStorePacket)
  expect(p.setup.constructor.name).toBe('AsyncFunction')
})

test('a store method that throws synchronously keeps the limit restored', () => {
  const p = persistenceFastPaths({ incomingGetPacket () { throw new TypeError('sync') } } as { incomingGetPacket (): unknown }, () => {})
  expect(() => p.incomingGetPacket()).toThrow('sync')
  expect(Error.stackTraceLimit).toBe(10)
})

test('a retained-message stream that fails is not an unhandled error: aedes pipes it without passing errors on', async () => {
  const { Readable, PassThrough } = await import('node:stream')
  const seen: string[] = []
  const p = persistenceFastPaths({
    createRetainedStreamCombi () {
      return new Readable({ objectMode: true, read () { this.destroy(Object.assign(new Error('Iterator is not open'), { code: 'LEVEL_ITERATOR_NOT_OPEN' })) } })
    }
  } as { createRetainedStreamCombi (): NodeJS.ReadableStream }, () => {}, err => seen.push(err.message))
  const stream = p.createRetainedStreamCombi() as InstanceType<typeof Readable>
  // as aedes' subscribe handler does: pipe, no error handling of its own
  stream.pipe(new PassThrough({ objectMode: true }))
  await new Promise(resolve => stream.once('close', resolve))
  expect(seen).toEqual(['Iterator is not open'])
})
