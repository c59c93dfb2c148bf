/** Midge's msgpack writer: msgpack-lite's bytes for every value it writes, and what msgpack-lite decodes from them. */
import { test, expect } from 'vitest'
import { MsgpackWriter } from '../../src/persistence/msgpack-writer.js'
import { msgpack } from '../../src/persistence/level-layout.js'
import { PacketCodec } from '../../src/persistence/packet-codec.js'

const writer = new MsgpackWriter()

function same (v: unknown): void {
  const w = writer.write(v)
  expect(w, JSON.stringify(v)).toBeDefined()
  expect(w!.bytes.toString('hex')).toBe(msgpack.encode(v).toString('hex'))
  expect(w!.decoded).toEqual(msgpack.decode(w!.bytes))
}

test('numbers, strings, buffers, maps and arrays at every size boundary msgpack-lite has', () => {
  const numbers = [0, -0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 60,
    -1, -0x20, -0x21, -0x80, -0x81, -0x8000, -0x8001, -(2 ** 31), -(2 ** 31) - 1, 1.5, -2.25, NaN, Infinity, -Infinity, 1_900_000_000_123]
  for (const n of numbers) same({ n })
  for (const len of [0, 1, 10, 11, 31, 32, 84, 85, 86, 255, 256, 0xffff, 0x10000, 70_000]) {
    same({ ascii: 'a'.repeat(len) })
    // three bytes a character: the header msgpack-lite guesses from the characters is wrong, and the bytes move
    same({ wide: '€'.repeat(len) })
    same({ mixed: 'ü'.repeat(len) + 'x' })
    same({ bin: Buffer.alloc(len, 7) })
    same(Array.from({ length: Math.min(len, 70_000) }, (_, i) => i))
  }
  for (const len of [254, 255, 256]) same({ bin: Buffer.alloc(len, 1) })
  const wide: Record<string, number> = {}
  for (let i = 0; i < 70_000; i++) wide[`k${i}`] = i
  same(wide)
  same({ n: null, u: undefined, f: () => {}, s: Symbol('x'), t: true, no: false, nested: { a: [{ b: [] }, {}] } })
  same(Object.assign(Object.create(null), { x: 1 }))
})

test('aedes packets as the store writes them (aedes-packet and QoSPacket shapes, v5 properties)', () => {
  class Packet {
    cmd = 'publish'
    brokerId = 'midge-0000000001-abcd'
    brokerCounter = 123456
    topic = 'bench/in/ü/7'
    payload = Buffer.from('hello')
    qos = 1
    retain = false
    dup = false
    messageId: number | undefined = undefined
  }
  const p = new Packet()
  same(p)
  same(Object.assign(new Packet(), { messageId: 65535, writeCallback: () => {} }))
  same({
    properties: { userProperties: { a: ['x', 'y'], constructor: 'z' }, correlationData: Buffer.from([0, 255]), contentType: 'c', payloadFormatIndicator: true },
    messageExpiry: 1_900_000_000_000,
    ...p
  })
  same({ cmd: 'pubrel', messageId: 3, reasonCode: 0, brokerId: 'b', brokerCounter: 2 })
})

test('values msgpack-lite writes in its own way are left to it, and the codec still writes its bytes', () => {
  const codec = new PacketCodec()
  for (const v of [{ d: new Date(0) }, { u: new Uint8Array([1]) }, { e: new Error('x') }, { m: new Map([[1, 2]]) }, { b: Object(true) as object }]) {
    expect(writer.write(v)).toBeUndefined()
    const bytes = codec.encode(v)
    expect(bytes.toString('hex')).toBe(msgpack.encode(v).toString('hex'))
    // not kept decoded: read back by decoding
    codec.decode(bytes)
  }
  expect(codec.stats).toEqual({ decoded: 5, reused: 0 })
  // a value after a large one: the scratch space is back to its size and the bytes are right
  same({ big: Buffer.alloc(200_000, 3) })
  same({ small: 'x' })
})
