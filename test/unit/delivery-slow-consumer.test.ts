/**
 * Slow consumers (src/broker/delivery/slow-consumer.ts) against real aedes over in-memory stream pairs: a
 * subscriber that reads nothing holds its publisher (aedes does not read the publisher's next packets) until it
 * counts as stuck, then no longer; beyond the limit what is sent to it is dropped, counted and logged once; once it
 * reads again it is no longer stuck.
 */
import { test, expect } from 'vitest'
import pino from 'pino'
import { startPairBroker, watchDeliveries, type PairBroker, type PairClient } from '../helpers/stream-pair.js'
import { keepsUp } from '../../src/broker/delivery.js'

/** Larger than the pair's buffer (16 KiB): not one write to a client that does not read completes. */
const PAYLOAD = 'x'.repeat(20_000)
const STUCK_AFTER_MS = 100

/** Publishes QoS 0 messages `from`..`to` to `slow/x` and waits until each has passed the delivery layer. */
async function publishRange (b: PairBroker, pub: PairClient, from: number, to: number): Promise<void> {
  const delivered = await watchDeliveries(b.aedes, 'slow/#', to - from + 1)
  for (let i = from; i <= to; i++) pub.send({ cmd: 'publish', topic: 'slow/x', payload: `${i}:${PAYLOAD}`, qos: 0, retain: false, dup: false })
  await delivered.done
}

test('a subscriber that reads nothing holds its publisher until stuck, then messages beyond the limit are dropped; reading again ends it', async ({ onTestFinished }) => {
  const warnings: Array<{ msg: string, clientId?: string }> = []
  const log = pino({ level: 'warn' }, { write: (line: string) => { warnings.push(JSON.parse(line) as { msg: string }) } })
  // max_inflight_messages 2 + max_queued_messages 2
  const b = await startPairBroker({ maxPending: 4, maxInflight: 2, maxWaiting: 2, stuckAfterMs: STUCK_AFTER_MS, log })
  onTestFinished(() => b.close())
  const sub = b.pair()
  await sub.connect({ clientId: 'stuck' })
  expect(await sub.subscribe('slow/#', 0)).toEqual([0])
  const pub = b.pair()
  await pub.connect({ clientId: 'pub' })
  sub.pause()

  // three messages, within the limit: the publisher is not read again (its PINGREQ waits) until the subscriber
  // counts as stuck
  const start = performance.now()
  await publishRange(b, pub, 1, 3)
  await pub.ping()
  expect(performance.now() - start).toBeGreaterThanOrEqual(STUCK_AFTER_MS - 1)
  expect([b.opts.stats.stuckEpisodes, b.opts.stats.droppedSlowConsumer, keepsUp(sub.client)]).toEqual([1, 0, false])

  // five more: the publisher does not wait; the first fills the limit (4 waiting for the socket), the rest are dropped
  await publishRange(b, pub, 4, 8)
  await pub.ping()
  expect([b.opts.stats.stuckEpisodes, b.opts.stats.droppedSlowConsumer]).toEqual([1, 4])
  expect(warnings.map(w => [w.clientId, w.msg])).toEqual([
    ['stuck', 'Outgoing messages are being dropped for client stuck: it is not reading (max_inflight_messages + max_queued_messages reached).']
  ])

  // it reads again: what was kept arrives, in order, and it is no longer stuck
  sub.resume()
  const got = await sub.publishes(4)
  expect(got.map(p => p.payload.toString().split(':')[0])).toEqual(['1', '2', '3', '4'])
  expect(keepsUp(sub.client)).toBe(true)
})

test('a subscriber that reads holds its publisher only until its socket took the message', async ({ onTestFinished }) => {
  const b = await startPairBroker({ stuckAfterMs: 60_000 })
  onTestFinished(() => b.close())
  const sub = b.pair()
  await sub.connect({ clientId: 'reader' })
  expect(await sub.subscribe('slow/#', 0)).toEqual([0])
  const pub = b.pair()
  await pub.connect({ clientId: 'pub' })
  const other = b.pair()
  await other.connect({ clientId: 'other' })
  sub.pause()
  await publishRange(b, pub, 1, 1)
  pub.send({ cmd: 'pingreq' })
  // another connection's round trips: the broker has had every chance to read and answer the publisher's PINGREQ
  await other.ping()
  await other.ping()
  expect(pub.log.map(p => p.cmd)).toEqual(['connack'])
  sub.resume()
  expect((await sub.next('publish')).payload.toString().split(':')[0]).toBe('1')
  await pub.next('pingresp')
  expect([b.opts.stats.stuckEpisodes, b.opts.stats.droppedSlowConsumer, keepsUp(sub.client)]).toEqual([0, 0, true])
})
