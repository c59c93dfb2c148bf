/**
 * A subscriber that stops reading: the broker's memory stays bounded and the other subscribers keep
 * getting their messages at once, not after aedes' drainTimeout (30 s) closes the stuck one. The broker is a child
 * process (`npm run build` first) with a probe that reports its memory after GC.
 */
import { test, expect } from 'vitest'
import net from 'node:net'
import { once } from 'node:events'
import mqttPacket from 'mqtt-packet'
import mqtt from 'mqtt'
import { startChildBroker } from '../helpers/processes.js'

const PAYLOAD = Buffer.alloc(2048, 0x61)
const QOS0 = 8000
const QOS1 = 2000
const FLOOD_BYTES = (QOS0 + QOS1) * PAYLOAD.length // 20 MB

/** A raw subscriber that reads its SUBACK and then never reads again. */
async function stuckSubscriber (port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1')
  await once(s, 'connect')
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const suback = new Promise<void>(resolve => parser.on('packet', (p) => { if (p.cmd === 'suback') resolve() }))
  s.on('data', (d: Buffer) => parser.parse(d))
  s.on('error', () => {})
  s.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'stuck', keepalive: 0 }))
  s.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood/#', qos: 1 }] }))
  await suback
  s.removeAllListeners('data')
  s.pause() // from now on the kernel buffers fill up, then the broker's
  return s
}

test('a subscriber that never reads: bounded broker memory, other subscribers not stalled, drops counted', async ({ onTestFinished }) => {
  const b = await startChildBroker('listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}\nmax_queued_messages 100\nlog_type all\n')
  onTestFinished(async () => { await b.close() })
  const port = b.ports[0]!
  const url = `mqtt://127.0.0.1:${port}`

  const stuck = await stuckSubscriber(port)
  onTestFinished(() => { stuck.destroy() })
  const healthy = await mqtt.connectAsync(url, { clientId: 'healthy', reconnectPeriod: 0 })
  onTestFinished(() => healthy.endAsync(true))
  let received = 0
  const end = new Promise<void>(resolve => healthy.on('message', (t) => { received++; if (t === 'flood/end') resolve() }))
  await healthy.subscribeAsync('flood/#', { qos: 1 })

  const before = await b.stats({ gc: true })
  // the publisher: raw, pipelining the whole flood with TCP backpressure, counting PUBACKs
  const pub = net.connect(port, '127.0.0.1')
  await once(pub, 'connect')
  onTestFinished(() => { pub.destroy() })
  const pubParser = mqttPacket.parser({ protocolVersion: 4 })
  let pubacks = 0
  const allAcked = new Promise<void>(resolve => pubParser.on('packet', (p) => { if (p.cmd === 'puback' && ++pubacks === QOS1) resolve() }))
  pub.on('data', (d: Buffer) => pubParser.parse(d))
  pub.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'pub', keepalive: 0 }))
  const timeout = (what: string) => new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error(`${what}: healthy got ${received}, publisher got ${pubacks} PUBACKs\n${b.stderr().split('\n').slice(-15).join('\n')}`)), 25_000).unref())
  const pubClosed = once(pub, 'close').then(() => { throw new Error(`the broker closed the publisher:\n${b.stderr().split('\n').filter(l => l.includes('pub')).slice(-5).join('\n')}`) })
  pubClosed.catch(() => {})
  const started = Date.now()
  let messageId = 0
  for (let i = 0; i < QOS0 + QOS1; i++) {
    const qos1 = i % 5 === 4
    const bytes = mqttPacket.generate({ cmd: 'publish', topic: qos1 ? 'flood/one' : 'flood/zero', payload: PAYLOAD, qos: qos1 ? 1 : 0, retain: false, dup: false, ...(qos1 ? { messageId: ++messageId } : {}) })
    if (!pub.write(bytes)) await Promise.race([once(pub, 'drain'), pubClosed])
  }
  await Promise.race([allAcked, timeout('publisher not acknowledged')])
  pub.write(mqttPacket.generate({ cmd: 'publish', topic: 'flood/end', payload: Buffer.from('end'), qos: 1, messageId: 60000, retain: false, dup: false }))
  await Promise.race([end, timeout('flood/end not received')])
  const elapsed = Date.now() - started
  const after = await b.stats({ gc: true })

  // the healthy subscriber got everything, well before aedes' 30 s drainTimeout would have freed the publisher
  expect(received).toBe(QOS0 + QOS1 + 1)
  expect(elapsed).toBeLessThan(20_000)
  // the stuck one is still connected (nothing closed it yet) and what waits for it is bounded: the broker holds
  // at most ~(100 + 20) messages for it, not the 20 MB that were published
  const grown = (after.heapUsed + after.arrayBuffers) - (before.heapUsed + before.arrayBuffers)
  expect(grown).toBeLessThan(FLOOD_BYTES / 4)
  expect(b.stderr()).toContain('Outgoing messages are being dropped for client stuck')
  expect(b.alive()).toBe(true)
  console.log(`slow consumer: ${QOS0 + QOS1} x ${PAYLOAD.length} B in ${elapsed} ms, broker heap+buffers grew ${(grown / 1e6).toFixed(1)} MB (rss ${(before.rss / 1e6).toFixed(0)} -> ${(after.rss / 1e6).toFixed(0)} MB)`)
}, 60_000)
