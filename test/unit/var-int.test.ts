import { test, expect } from 'vitest'
import { encodeVarInt, readVarInt, packetLength } from '../../src/mqtt/var-int.js'

// the boundaries of the spec's table [MQTT-1.5.5]
const CASES: Array<[number, number[]]> = [
  [0, [0x00]], [127, [0x7f]], [128, [0x80, 0x01]], [16_383, [0xff, 0x7f]], [16_384, [0x80, 0x80, 0x01]],
  [2_097_151, [0xff, 0xff, 0x7f]], [2_097_152, [0x80, 0x80, 0x80, 0x01]], [268_435_455, [0xff, 0xff, 0xff, 0x7f]]
]

test.each(CASES)('%i is %j, and reads back from any offset', (n, bytes) => {
  expect(encodeVarInt(n)).toEqual(bytes)
  expect(readVarInt(Buffer.from([0xaa, ...bytes, 0x55]), 1)).toEqual([n, bytes.length])
})

test('an incomplete or over-long integer reads as undefined', () => {
  expect(readVarInt(Buffer.from([0x80, 0x80]), 0)).toBeUndefined()
  expect(readVarInt(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x01]), 0)).toBeUndefined()
  expect(readVarInt(Buffer.alloc(0), 0)).toBeUndefined()
})

test('packetLength: fixed header and body of the packet at an offset', () => {
  // PINGRESP, then a PUBACK with 2 bytes of body
  const buf = Buffer.from([0xd0, 0x00, 0x40, 0x02, 0x00, 0x01])
  expect(packetLength(buf, 0)).toBe(2)
  expect(packetLength(buf, 2)).toBe(4)
  expect(packetLength(Buffer.from([0x30]), 0)).toBeUndefined()
  expect(packetLength(Buffer.from([0x30, 0x80, 0x01]), 0)).toBe(131)
})
