/**
 * One copy per client (src/broker/delivery/duplicate-filter.ts) against real aedes over in-memory stream pairs:
 * overlapping subscriptions give one copy at the highest QoS granted, and the exact filter drops a second delivery
 * of the same message (same brokerId and counter) but not an older message arriving late.
 */
import { test, expect } from 'vitest'
import { startPairBroker, watchDeliveries, type PairBroker } from '../helpers/stream-pair.js'

const publish = (b: PairBroker, topic: string, payload: string, qos: 0 | 1 | 2, key?: { brokerId: string, brokerCounter: number }): void => {
  b.aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, ...key } as never, () => {})
}

test('overlapping subscriptions at QoS 0 and 1: one copy, at QoS 1 [MQTT-3.3.5-1]', async ({ onTestFinished }) => {
  const b = await startPairBroker()
  onTestFinished(() => b.close())
  const sub = b.pair()
  await sub.connect({ clientId: 'overlap' })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 0 }, { topic: 'a/b', qos: 1 }] })
  expect((await sub.next('suback')).granted).toEqual([0, 1])
  const delivered = await watchDeliveries(b.aedes, 'a/#', 2)
  publish(b, 'a/b', 'both', 1)
  publish(b, 'a/c', 'one', 1)
  await delivered.done
  const got = await sub.publishes(2)
  expect(got.map(p => [p.topic, p.payload.toString(), p.qos])).toEqual([['a/b', 'both', 1], ['a/c', 'one', 0]])
})

test('overlapping subscriptions at the same QoS: one copy', async ({ onTestFinished }) => {
  const b = await startPairBroker()
  onTestFinished(() => b.close())
  const sub = b.pair()
  await sub.connect({ clientId: 'same' })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 1 }, { topic: 'a/+', qos: 1 }, { topic: 'a/b', qos: 1 }] })
  expect((await sub.next('suback')).granted).toEqual([1, 1, 1])
  const delivered = await watchDeliveries(b.aedes, 'a/#', 1)
  publish(b, 'a/b', 'once', 1)
  await delivered.done
  expect((await sub.publishes(1)).map(p => p.payload.toString())).toEqual(['once'])
})

test('the same brokerId and counter twice is delivered once; an older counter arriving late is still delivered', async ({ onTestFinished }) => {
  const b = await startPairBroker()
  onTestFinished(() => b.close())
  const sub = b.pair()
  await sub.connect({ clientId: 'dup' })
  expect(await sub.subscribe('d/#', 0)).toEqual([0])
  const delivered = await watchDeliveries(b.aedes, 'd/#', 4)
  // as a cluster peer's copy of a message would arrive twice, and a message stored longer arrives after a newer one
  publish(b, 'd/1', 'ten', 0, { brokerId: 'peer', brokerCounter: 10 })
  publish(b, 'd/1', 'ten again', 0, { brokerId: 'peer', brokerCounter: 10 })
  publish(b, 'd/1', 'nine', 0, { brokerId: 'peer', brokerCounter: 9 })
  publish(b, 'd/1', 'ten elsewhere', 0, { brokerId: 'other', brokerCounter: 10 })
  await delivered.done
  expect((await sub.publishes(3)).map(p => p.payload.toString())).toEqual(['ten', 'nine', 'ten elsewhere'])
})
