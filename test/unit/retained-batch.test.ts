/** A new subscription's retained messages: answered ahead of their write, at most RETAINED_AHEAD at a time. */
import { test, expect } from 'vitest'
import { PassThrough } from 'node:stream'
import { sendRetainedInBatches, RETAINED_AHEAD } from '../../src/broker/delivery/retained-batch.js'
import type { ClientInternals, DeliverPacket, DeliveryPair } from '../../src/aedes/internals.js'

function setup (): { pair: DeliveryPair, handed: DeliverPacket[], writes: Array<() => void>, client: { closed: boolean, conn: PassThrough } } {
  const handed: DeliverPacket[] = []
  const writes: Array<() => void> = []
  const inner = (packet: DeliverPacket, cb: () => void): void => { handed.push(packet); writes.push(cb) }
  const client = { closed: false, conn: new PassThrough() }
  const build = sendRetainedInBatches(() => ({ deliverQoS: inner, deliver0: inner }))
  const pair = build(client as unknown as ClientInternals, inner, inner)
  return { pair, handed, writes, client }
}

const retained = (i: number): DeliverPacket => ({ topic: `t/${i}`, qos: 0, brokerId: null })

test('retained messages are answered at once up to the limit, then the stream waits for a write; order is kept', () => {
  const { pair, handed, writes } = setup()
  let answered = 0
  for (let i = 0; i < RETAINED_AHEAD + 1; i++) pair.deliverQoS(retained(i), () => { answered++ })
  expect(handed.map(p => p.topic)).toEqual(Array.from({ length: RETAINED_AHEAD + 1 }, (_, i) => `t/${i}`))
  // the last one went on with the stream's own callback: it waits for that write
  expect(answered).toBe(RETAINED_AHEAD)
  for (const w of writes.splice(0)) w()
  expect(answered).toBe(RETAINED_AHEAD + 1)
  // all written: the next ones go ahead again
  pair.deliverQoS(retained(99), () => { answered++ })
  expect(answered).toBe(RETAINED_AHEAD + 2)
})

test('live messages, a closed client and a socket that asks for a drain keep the callback on the write', () => {
  const { pair, writes, client } = setup()
  let answered = 0
  pair.deliverQoS({ topic: 'live', qos: 1, brokerId: 'b', brokerCounter: 1 }, () => { answered++ })
  expect(answered).toBe(0)
  client.closed = true
  pair.deliverQoS(retained(1), () => { answered++ })
  expect(answered).toBe(0)
  client.closed = false
  client.conn.write(Buffer.alloc(client.conn.writableHighWaterMark + 1))
  expect(client.conn.writableNeedDrain).toBe(true)
  pair.deliverQoS(retained(2), () => { answered++ })
  expect(answered).toBe(0)
  for (const w of writes) w()
  expect(answered).toBe(3)
})
