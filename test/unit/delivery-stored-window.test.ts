/**
 * The stored queue's window (src/broker/delivery/stored-window.ts) against real aedes over in-memory stream pairs:
 * a returning persistent session's stored messages share `max_inflight_messages` with live ones, and live QoS 1/2
 * messages published during the replay go out after the stored ones.
 */
import { once } from 'node:events'
import { test, expect } from 'vitest'
import { IdSequence, startPairBroker, watchDeliveries, type PairBroker } from '../helpers/stream-pair.js'

/** Publishes QoS 1 messages from a client of their own, waiting for each PUBACK (aedes acknowledges once it is stored). */
async function publishStored (b: PairBroker, payloads: string[]): Promise<void> {
  const pub = b.pair()
  await pub.connect({ clientId: 'pub' })
  payloads.forEach((payload, i) => pub.send({ cmd: 'publish', topic: 'q/x', payload, qos: 1, messageId: i + 1, retain: false, dup: false }))
  for (let i = 0; i < payloads.length; i++) await pub.next('puback')
  await pub.end()
}

test('stored queue on reconnect: 2 of 4 before any acknowledgement, one per PUBACK, a live message after the stored ones', async ({ onTestFinished }) => {
  const b = await startPairBroker({ maxInflight: 2 })
  onTestFinished(() => b.close())
  const first = b.pair()
  await first.connect({ clientId: 'st', clean: false })
  expect(await first.subscribe('q/#', 1)).toEqual([1])
  const gone = once(b.aedes, 'clientDisconnect')
  await first.end()
  await gone
  await publishStored(b, ['s1', 's2', 's3', 's4'])

  const ids = new IdSequence()
  const sub = b.pair()
  const connack = await sub.connect({ clientId: 'st', clean: false })
  expect([connack.returnCode, connack.sessionPresent]).toEqual([0, true])
  expect(ids.read(await sub.publishes(2))).toEqual([['s1', 0, 1], ['s2', 1, 1]])
  // a live message while the stored queue waits for the window: it goes out after the stored ones
  const delivered = await watchDeliveries(b.aedes, 'q/#', 1)
  b.aedes.publish({ cmd: 'publish', topic: 'q/x', payload: Buffer.from('live'), qos: 1, retain: false, dup: false }, () => {})
  await delivered.done
  expect(ids.read(await sub.publishes(0))).toEqual([])
  sub.send({ cmd: 'puback', messageId: ids.of('s1') })
  expect(ids.read(await sub.publishes(1))).toEqual([['s3', 2, 1]])
  sub.send({ cmd: 'puback', messageId: ids.of('s2') })
  expect(ids.read(await sub.publishes(1))).toEqual([['s4', 3, 1]])
  sub.send({ cmd: 'puback', messageId: ids.of('s3') })
  expect(ids.read(await sub.publishes(1))).toEqual([['live', 4, 1]])
  sub.send({ cmd: 'puback', messageId: ids.of('s4') })
  sub.send({ cmd: 'puback', messageId: ids.of('live') })
  expect(ids.read(await sub.publishes(0))).toEqual([])
})

test('a stored message already sent keeps its packet id and is resent with DUP=1, in the window', async ({ onTestFinished }) => {
  const b = await startPairBroker({ maxInflight: 1 })
  onTestFinished(() => b.close())
  const first = b.pair()
  await first.connect({ clientId: 'st2', clean: false })
  expect(await first.subscribe('q/#', 1)).toEqual([1])
  await publishStored(b, ['a', 'b'])
  // one in flight, unacknowledged, when the connection goes
  const [sent] = await first.publishes(1)
  expect([sent!.payload.toString(), sent!.dup]).toEqual(['a', false])
  const gone = once(b.aedes, 'clientDisconnect')
  await first.end()
  await gone

  const sub = b.pair()
  await sub.connect({ clientId: 'st2', clean: false })
  const [again] = await sub.publishes(1)
  expect([again!.payload.toString(), again!.messageId, again!.dup]).toEqual(['a', sent!.messageId, true])
  sub.send({ cmd: 'puback', messageId: sent!.messageId })
  const [next] = await sub.publishes(1)
  expect([next!.payload.toString(), next!.dup]).toEqual(['b', false])
})
