/**
 * The outgoing window (src/broker/delivery/outgoing-window.ts) against real aedes over in-memory stream pairs:
 * `max_inflight_messages` and a v5 client's Receive Maximum.
 */
import { test, expect } from 'vitest'
import { IdSequence, startPairBroker, watchDeliveries, type PairBroker, type PairClient } from '../helpers/stream-pair.js'

const publish = (b: PairBroker, topic: string, payload: string, qos: 0 | 1 | 2): void => {
  b.aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false }, () => {})
}

/** The next `n` PUBLISH packets (and nothing more), as [payload, packet id in sequence, qos]. */
async function received (c: PairClient, ids: IdSequence, n: number): Promise<Array<[string, number | undefined, number]>> {
  return ids.read(await c.publishes(n))
}

test('max_inflight_messages 2: exactly 2 QoS 1 PUBLISH in flight, one more per PUBACK, ids and messages in order', async ({ onTestFinished }) => {
  const b = await startPairBroker({ maxInflight: 2 })
  onTestFinished(() => b.close())
  const ids = new IdSequence()
  const sub = b.pair()
  expect((await sub.connect({ clientId: 'w' })).returnCode).toBe(0)
  expect(await sub.subscribe('w/#', 1)).toEqual([1])
  const delivered = await watchDeliveries(b.aedes, 'w/#', 5)
  for (let i = 1; i <= 5; i++) publish(b, `w/${i}`, `m${i}`, 1)
  await delivered.done
  expect(await received(sub, ids, 2)).toEqual([['m1', 0, 1], ['m2', 1, 1]])
  sub.send({ cmd: 'puback', messageId: ids.of('m1') })
  expect(await received(sub, ids, 1)).toEqual([['m3', 2, 1]])
  // an id no longer in flight, and a PUBCOMP for a QoS 1 message, free nothing
  sub.send({ cmd: 'puback', messageId: ids.of('m1') })
  sub.send({ cmd: 'pubcomp', messageId: ids.of('m2') })
  expect(await received(sub, ids, 0)).toEqual([])
  sub.send({ cmd: 'puback', messageId: ids.of('m2') })
  sub.send({ cmd: 'puback', messageId: ids.of('m3') })
  expect(await received(sub, ids, 2)).toEqual([['m4', 3, 1], ['m5', 4, 1]])
})

test('max_inflight_messages 2 with QoS 2: a PUBREC does not free the slot, the PUBCOMP does; QoS 0 is not windowed', async ({ onTestFinished }) => {
  const b = await startPairBroker({ maxInflight: 2 })
  onTestFinished(() => b.close())
  const ids = new IdSequence()
  const sub = b.pair()
  await sub.connect({ clientId: 'w2' })
  expect(await sub.subscribe('w/#', 2)).toEqual([2])
  const delivered = await watchDeliveries(b.aedes, 'w/#', 4)
  for (let i = 1; i <= 3; i++) publish(b, `w/${i}`, `m${i}`, 2)
  publish(b, 'w/0', 'q0', 0)
  await delivered.done
  const first = await received(sub, ids, 3)
  expect(first.filter(p => p[2] === 2)).toEqual([['m1', 0, 2], ['m2', 1, 2]])
  expect(first.filter(p => p[2] === 0)).toEqual([['q0', undefined, 0]])
  sub.send({ cmd: 'pubrec', messageId: ids.of('m1') })
  expect((await sub.next('pubrel')).messageId).toBe(ids.of('m1'))
  expect(await received(sub, ids, 0)).toEqual([])
  sub.send({ cmd: 'pubcomp', messageId: ids.of('m1') })
  expect(await received(sub, ids, 1)).toEqual([['m3', 2, 2]])
})

test('a v5 Receive Maximum of 1 narrows a window of 2: one PUBLISH in flight at a time', async ({ onTestFinished }) => {
  const b = await startPairBroker({ maxInflight: 2 })
  onTestFinished(() => b.close())
  const ids = new IdSequence()
  const sub = b.pair(5)
  expect((await sub.connect({ clientId: 'rm', properties: { receiveMaximum: 1 } })).reasonCode).toBe(0)
  expect(await sub.subscribe('w/#', 1)).toEqual([1])
  const delivered = await watchDeliveries(b.aedes, 'w/#', 3)
  for (let i = 1; i <= 3; i++) publish(b, `w/${i}`, `m${i}`, 1)
  await delivered.done
  expect(await received(sub, ids, 1)).toEqual([['m1', 0, 1]])
  sub.send({ cmd: 'puback', messageId: ids.of('m1') })
  expect(await received(sub, ids, 1)).toEqual([['m2', 1, 1]])
  sub.send({ cmd: 'puback', messageId: ids.of('m2') })
  expect(await received(sub, ids, 1)).toEqual([['m3', 2, 1]])
})

test('without max_inflight_messages, a v5 client\'s Receive Maximum is its window', async ({ onTestFinished }) => {
  const b = await startPairBroker({ maxInflight: 0 })
  onTestFinished(() => b.close())
  const ids = new IdSequence()
  const sub = b.pair(5)
  await sub.connect({ clientId: 'rm2', properties: { receiveMaximum: 2 } })
  expect(await sub.subscribe('w/#', 1)).toEqual([1])
  const delivered = await watchDeliveries(b.aedes, 'w/#', 4)
  for (let i = 1; i <= 4; i++) publish(b, `w/${i}`, `m${i}`, 1)
  await delivered.done
  expect(await received(sub, ids, 2)).toEqual([['m1', 0, 1], ['m2', 1, 1]])
  sub.send({ cmd: 'puback', messageId: ids.of('m2') })
  expect(await received(sub, ids, 1)).toEqual([['m3', 2, 1]])
})

test('a message waiting for the window holds its publisher until the subscriber goes; then the publisher is read again', async ({ onTestFinished }) => {
  const b = await startPairBroker({ maxInflight: 1, stuckAfterMs: 60_000 })
  onTestFinished(() => b.close())
  const sub = b.pair()
  await sub.connect({ clientId: 'w3' })
  expect(await sub.subscribe('w/#', 1)).toEqual([1])
  const pub = b.pair()
  await pub.connect({ clientId: 'pub' })
  const other = b.pair()
  await other.connect({ clientId: 'other' })
  const delivered = await watchDeliveries(b.aedes, 'w/#', 2)
  for (let i = 1; i <= 2; i++) pub.send({ cmd: 'publish', topic: `w/${i}`, payload: `m${i}`, qos: 1, messageId: i, retain: false, dup: false })
  await delivered.done
  expect((await sub.publishes(1)).map(p => p.payload.toString())).toEqual(['m1'])
  // m2 waits for the window: the publisher's next packets are not read
  pub.send({ cmd: 'pingreq' })
  await other.ping()
  await other.ping()
  expect(pub.log.map(p => p.cmd)).toEqual(['connack', 'puback', 'puback'])
  await sub.end()
  await pub.next('pingresp')
})
