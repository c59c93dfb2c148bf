import { test, expect } from 'vitest'
import mqttPacket from 'mqtt-packet'
import * as wire from '../../src/bench/wire.js'

/** Every packet the bench's encoder makes, decoded by mqtt-packet (the parser aedes uses). */
function decode (buf: Buffer): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = []
  const p = mqttPacket.parser({ protocolVersion: 4 })
  p.on('packet', (pk: mqttPacket.Packet) => out.push(pk as unknown as Record<string, unknown>))
  p.on('error', (err: Error) => { throw err })
  p.parse(buf)
  return out
}

test('the load generator\'s packets are valid MQTT 3.1.1', () => {
  const t = wire.publishTemplate('bench/in/7', Buffer.alloc(64, 0x61), 1)
  const pub = Buffer.from(t.buf)
  pub.writeUInt16BE(513, t.idOffset)
  const got = decode(Buffer.concat([
    wire.connect('c1', { clean: false, keepalive: 0 }),
    wire.subscribe(3, [{ topic: 'bench/#', qos: 2 }]),
    pub,
    wire.ack(wire.PUBREL, 9),
    wire.pingreq(),
    wire.disconnect()
  ]))
  expect(got.map(p => p.cmd)).toEqual(['connect', 'subscribe', 'publish', 'pubrel', 'pingreq', 'disconnect'])
  expect([got[0]!.clientId, got[0]!.clean, got[0]!.keepalive]).toEqual(['c1', false, 0])
  expect(got[1]!.subscriptions).toEqual([{ topic: 'bench/#', qos: 2 }])
  expect([got[2]!.topic, got[2]!.qos, got[2]!.messageId, (got[2]!.payload as Buffer).length]).toEqual(['bench/in/7', 1, 513, 64])
  expect(got[3]!.messageId).toBe(9)
})

test('the scanner finds every packet however the stream is cut, including inside a remaining length', () => {
  const big = wire.publishTemplate('t', Buffer.alloc(300, 1), 0).buf // 2-byte remaining length
  const stream = Buffer.concat([big, wire.ack(wire.PUBACK, 7), big, wire.pingreq()])
  for (let cut = 1; cut < stream.length; cut++) {
    const seen: Array<[number, number]> = []
    const s = new wire.Scanner((type, _flags, _buf, start, end) => seen.push([type, end - start]))
    s.push(stream.subarray(0, cut))
    s.push(stream.subarray(cut))
    expect(seen).toEqual([[wire.PUBLISH, 303], [wire.PUBACK, 2], [wire.PUBLISH, 303], [12, 0]])
  }
})
