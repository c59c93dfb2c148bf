/** MidgeStore's queue-limits step (max_queued_messages / max_queued_bytes) on the real memory store. */
import { test, expect } from 'vitest'
import { accounting, collect, memoryBackend, newStore, publish } from './store-fixtures.js'

const offline = { id: 'away' }
const sub = { clientId: offline.id, topic: 't/#', qos: 1 }

test('max_queued_messages: the (n+1)th message for an offline client is not queued, and the drop is counted', async () => {
  const { acct, stats } = accounting({ maxMessages: 3 })
  const store = await newStore(memoryBackend(), { accounting: acct })
  for (let i = 1; i <= 4; i++) await store.outgoingEnqueueCombi([sub], publish('t/a', i))
  expect((await collect(store.outgoingStream(offline))).map(p => p.brokerCounter)).toEqual([1, 2, 3])
  expect(acct.queued(offline.id).count).toBe(3)
  expect(stats.droppedQueueFull).toBe(1)

  // one acknowledged (PUBACK after it was sent with id 1): room for one more
  await store.outgoingUpdate(offline, { ...publish('t/a', 1), messageId: 1 })
  await store.outgoingClearMessageId(offline, { messageId: 1 })
  await store.outgoingEnqueue(sub, publish('t/a', 5))
  expect((await collect(store.outgoingStream(offline))).map(p => p.brokerCounter)).toEqual([2, 3, 5])
  await store.outgoingEnqueue(sub, publish('t/a', 6))
  expect(stats.droppedQueueFull).toBe(2)
})

test('max_queued_bytes counts payload bytes: a message that would pass the budget is refused, a smaller one still fits', async () => {
  const { acct, stats } = accounting({ maxBytes: 10 })
  const store = await newStore(memoryBackend(), { accounting: acct })
  await store.outgoingEnqueue(sub, publish('t/a', 1, '123456'))
  expect(acct.queued(offline.id)).toEqual({ count: 1, bytes: 6 })
  await store.outgoingEnqueue(sub, publish('t/a', 2, '12345'))
  expect(stats.droppedQueueFull).toBe(1)
  await store.outgoingEnqueue(sub, publish('t/a', 3, '1234'))
  expect(acct.queued(offline.id)).toEqual({ count: 2, bytes: 10 })
  expect((await collect(store.outgoingStream(offline))).map(p => p.brokerCounter)).toEqual([1, 3])

  await store.outgoingUpdate(offline, { ...publish('t/a', 1, '123456'), messageId: 9 })
  await store.outgoingClearMessageId(offline, { messageId: 9 })
  expect(acct.queued(offline.id)).toEqual({ count: 1, bytes: 4 })
})

test('each subscriber of a message has its own limit; QoS 0 subscribers get no stored queue', async () => {
  const { acct } = accounting({ maxMessages: 1 })
  const store = await newStore(memoryBackend(), { accounting: acct })
  await store.outgoingEnqueue({ clientId: 'full', qos: 1 }, publish('t/a', 1))
  await store.outgoingEnqueueCombi([{ clientId: 'full', qos: 1 }, { clientId: 'empty', qos: 2 }, { clientId: 'qos0', qos: 0 }], publish('t/a', 2))
  expect((await collect(store.outgoingStream({ id: 'full' }))).map(p => p.brokerCounter)).toEqual([1])
  expect((await collect(store.outgoingStream({ id: 'empty' }))).map(p => p.brokerCounter)).toEqual([2])
  expect(await collect(store.outgoingStream({ id: 'qos0' }))).toEqual([])
  expect(acct.queued('qos0').count).toBe(0)
})

test('without accounting (a store shared by a cluster) nothing is limited', async () => {
  const store = await newStore(memoryBackend(), { accounting: undefined })
  for (let i = 1; i <= 5; i++) await store.outgoingEnqueue(sub, publish('t/a', i))
  expect((await collect(store.outgoingStream(offline))).length).toBe(5)
})
