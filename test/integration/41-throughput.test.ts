/**
 * The fast paths keep MQTT's guarantees: Midge's own emitter (src/broker/emitter.ts), the per-turn write
 * coalescer (src/broker/write-coalescer.ts) and pipelined publishing. Real sockets, exact counts and orders.
 */
import { test, expect } from 'vitest'
import mqttPacket from 'mqtt-packet'
import { startTestBroker } from '../helpers/start-broker.js'
import { RawClient, type AnyPacket } from '../helpers/raw-client.js'
import { connect, collect } from '../helpers/mqtt.js'

const publish = (topic: string, payload: string, qos: 0 | 1 = 0, messageId?: number): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, ...(qos > 0 ? { messageId } : {}) } as mqttPacket.Packet)

/** Collects PUBLISH packets from a raw client's socket, with their payloads as text. */
function publishes (c: RawClient): Array<{ topic: string, payload: string }> {
  const out: Array<{ topic: string, payload: string }> = []
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  parser.on('packet', (p: AnyPacket) => { if (p.cmd === 'publish') out.push({ topic: p.topic, payload: p.payload.toString() }) })
  c.socket.on('data', (d: Buffer) => parser.parse(d))
  return out
}

/** A raw client subscribed to `in/#` at QoS 0, and what it receives. */
async function wildcardSubscriber (port: number, onTestFinished: (fn: () => void) => void): Promise<{ sub: RawClient, got: Array<{ topic: string, payload: string }> }> {
  const sub = await RawClient.connect(port)
  onTestFinished(() => sub.end())
  await sub.connectMqtt({ clientId: 'sub' })
  const got = publishes(sub)
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'in/#', qos: 0 }] })
  await sub.next('suback')
  return { sub, got }
}

test('QoS 0 fan-in: 5 publishers x 800 pipelined messages reach a wildcard subscriber complete and in per-publisher order', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const { sub, got } = await wildcardSubscriber(b.port(), onTestFinished)

  const pubs = await Promise.all([0, 1, 2, 3, 4].map(async i => {
    const p = await RawClient.connect(b.port())
    onTestFinished(() => p.end())
    await p.connectMqtt({ clientId: `pub${i}` })
    return p
  }))
  // 4 rounds of 200 messages per publisher, each round one write followed by a PINGREQ barrier
  for (let round = 0; round < 4; round++) {
    await Promise.all(pubs.map(async (p, i) => {
      p.write(Buffer.concat(Array.from({ length: 200 }, (_, k) => publish(`in/${i}`, String(round * 200 + k)))))
      await p.ping()
    }))
  }
  await sub.ping()
  expect(got.length).toBe(4000)
  for (let i = 0; i < 5; i++) {
    const mine = got.filter(m => m.topic === `in/${i}`).map(m => Number(m.payload))
    expect(mine).toEqual(Array.from({ length: 800 }, (_, k) => k))
  }
})

test('QoS 0 fan-in: 200 publishers x 64 messages at once reach a reading subscriber complete, however small max_queued_messages is', async ({ onTestFinished }) => {
  // One event-loop turn hands thousands of messages to aedes before the first is written. Counted against
  // max_queued_messages + max_inflight_messages (here 30) as if the subscriber were slow, they were dropped: the
  // bench's fanin-q0-p200 delivered 14.7k of 205k msg/s published. Only a stuck subscriber loses messages.
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_queued_messages 10\nmax_inflight_messages 20\n')
  onTestFinished(() => b.close())
  const { sub, got } = await wildcardSubscriber(b.port(), onTestFinished)
  const pubs = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
    const p = await RawClient.connect(b.port())
    onTestFinished(() => p.end())
    await p.connectMqtt({ clientId: `p${i}` })
    return p
  }))
  await Promise.all(pubs.map(async (p, i) => {
    p.write(Buffer.concat(Array.from({ length: 64 }, (_, k) => publish(`in/${i}`, String(k)))))
    await p.ping()
  }))
  await sub.ping()
  expect(got.length).toBe(200 * 64)
  for (let i = 0; i < 200; i += 37) {
    expect(got.filter(m => m.topic === `in/${i}`).map(m => Number(m.payload))).toEqual(Array.from({ length: 64 }, (_, k) => k))
  }
  expect(b.broker.stats.persistence?.droppedSlowConsumer).toBe(0)
})

test('a subscriber gets a burst of 500 messages over WebSocket complete and in order (several packets per frame)', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nprotocol websockets\n')
  onTestFinished(() => b.close())
  const sub = await connect(b.url('ws'), { clientId: 'wsub' }, onTestFinished)
  const inbox = collect(sub)
  await sub.subscribeAsync('burst', { qos: 0 })
  const pub = await RawClient.connect(b.port('tcp'))
  onTestFinished(() => pub.end())
  await pub.connectMqtt({ clientId: 'tpub' })
  pub.write(Buffer.concat(Array.from({ length: 500 }, (_, k) => publish('burst', String(k)))))
  await pub.ping()
  const msgs = await inbox.take(500)
  expect(msgs.map(m => Number(m.payload))).toEqual(Array.from({ length: 500 }, (_, k) => k))
})

test('100 QoS 1 publishes in flight on one connection are all acknowledged and delivered in order', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const sub = await connect(b.url(), { clientId: 'q1sub' }, onTestFinished)
  const inbox = collect(sub)
  await sub.subscribeAsync('q1/#', { qos: 1 })
  const pub = await RawClient.connect(b.port())
  onTestFinished(() => pub.end())
  await pub.connectMqtt({ clientId: 'q1pub' })
  // one write, as a client with a large in-flight window sends them (MQTT.js does not cap it)
  pub.write(Buffer.concat(Array.from({ length: 100 }, (_, k) => publish(`q1/${k % 3}`, String(k), 1, k + 1))))
  const acks: number[] = []
  for (let k = 0; k < 100; k++) acks.push((await pub.next('puback', 5000)).messageId as number)
  expect(acks.sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, k) => k + 1))
  const msgs = await inbox.take(100)
  expect(msgs.map(m => Number(m.payload))).toEqual(Array.from({ length: 100 }, (_, k) => k))
})

test('QoS 1 publishers faster than a persistent subscriber\'s window: every message is delivered, none dropped at max_queued_messages', async ({ onTestFinished }) => {
  // The bench's memory-q1-p10 acknowledged 55.7k msg/s to its publishers and delivered 14.5k: aedes read the
  // publishers on and on while their messages waited for the subscriber's window, and the subscriber's queue (here
  // 50 + the window of 20) overflowed. Now a publisher waits for its last batch to be delivered (read-loop.ts).
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_queued_messages 50\n')
  onTestFinished(() => b.close())
  const sub = await connect(b.url(), { clientId: 'slow-window-sub', clean: false }, onTestFinished)
  const inbox = collect(sub)
  await sub.subscribeAsync('q1/#', { qos: 1 })
  const pubs = await Promise.all([0, 1, 2, 3, 4].map(i => connect(b.url(), { clientId: `fast-pub-${i}` }, onTestFinished)))
  // MQTT.js writes each PUBLISH as it is called and caps nothing in flight: 400 per publisher at once
  await Promise.all(pubs.map(async (p, i) => Promise.all(Array.from({ length: 400 }, (_, k) => p.publishAsync(`q1/${i}`, String(k), { qos: 1 })))))
  const msgs = await inbox.take(2000, 20_000)
  for (let i = 0; i < 5; i++) {
    expect(msgs.filter(m => m.topic === `q1/${i}`).map(m => Number(m.payload))).toEqual(Array.from({ length: 400 }, (_, k) => k))
  }
  expect(b.broker.stats.persistence?.droppedQueueFull).toBe(0)
  expect(b.broker.stats.persistence?.droppedSlowConsumer).toBe(0)
})
