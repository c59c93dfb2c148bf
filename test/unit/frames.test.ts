/**
 * The fixed-header scanner (src/mqtt/frames.ts) on the spec's boundary values [MQTT-1.5.5], a malformed fifth
 * length byte, and a stream of packets cut at every byte position; and `countPackets` (sys/wire.ts), its user on
 * the outgoing side.
 */
import { test, expect } from 'vitest'
import { FrameScanner, frameEnd, FRAME_END, FRAME_HEADER, FRAME_MALFORMED, FRAME_MORE, FRAME_START, MAX_REMAINING_LENGTH, type FrameEvent } from '../../src/mqtt/frames.js'
import { encodeVarInt } from '../../src/mqtt/var-int.js'
import { countPackets } from '../../src/sys/wire.js'

/** The events of scanning `chunks` in order, with what the scanner knew at each (bodies never read). */
function events (chunks: readonly Buffer[], scanner = new FrameScanner()): string[] {
  const out: string[] = []
  let offset = 0 // of the chunk in the whole stream
  for (const chunk of chunks) {
    let at = 0
    for (;;) {
      const ev: FrameEvent = scanner.scan(chunk, at)
      at = scanner.at
      if (ev === FRAME_MORE) break
      if (ev === FRAME_START) out.push(`start ${scanner.type}/${scanner.flags} @${offset + at}`)
      else if (ev === FRAME_HEADER) out.push(`header ${scanner.remaining}+${scanner.headerLength} @${offset + at}`)
      else if (ev === FRAME_END) out.push(`end @${offset + at}`)
      else { out.push(`malformed @${offset + at}`); return out }
    }
    offset += chunk.length
  }
  return out
}

const CASES: Array<[remaining: number, headerLength: number]> = [
  [0, 2], [1, 2], [127, 2], [128, 3], [16_383, 3], [16_384, 4], [2_097_151, 4], [2_097_152, 5], [268_435_455, 5]
]

test.each(CASES)('remaining length %i: a header of %i bytes, the body skipped to its end', (remaining, headerLength) => {
  const header = Buffer.from([0x32, ...encodeVarInt(remaining)])
  expect(header.length).toBe(headerLength)
  const s = new FrameScanner()
  expect(s.scan(header, 0)).toBe(FRAME_START)
  expect([s.type, s.flags, s.at]).toEqual([3, 2, 1])
  expect(s.scan(header, s.at)).toBe(FRAME_HEADER)
  expect([s.remaining, s.headerLength, s.left, s.at, s.inBody]).toEqual([remaining, headerLength, remaining, headerLength, true])
  // the body, in chunks of at most 1 MiB (one buffer, read for its length only)
  const body = Buffer.alloc(Math.min(remaining, 1 << 20))
  let ev = s.scan(header, s.at)
  let passed = 0
  while (ev === FRAME_MORE) {
    const chunk = body.subarray(0, Math.min(body.length, remaining - passed))
    ev = s.scan(chunk, 0)
    passed += s.at
  }
  expect([ev, passed, s.left, s.inBody]).toEqual([FRAME_END, remaining, 0, false])
  // stateless: the same packet's end from its start, when the header is in the buffer
  expect(frameEnd(header, 0)).toBe(headerLength + remaining)
  // the header cut at every byte position reads the same
  const whole = events([header])
  expect(whole).toEqual(['start 3/2 @1', `header ${remaining}+${headerLength} @${headerLength}`, ...(remaining === 0 ? [`end @${headerLength}`] : [])])
  for (let cut = 0; cut <= header.length; cut++) expect(events([header.subarray(0, cut), header.subarray(cut)])).toEqual(whole)
})

test('the largest remaining length, 268435455, and a fifth length byte is malformed', () => {
  expect(MAX_REMAINING_LENGTH).toBe(268_435_455)
  const s = new FrameScanner()
  const bad = Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])
  expect(events([bad], s)).toEqual(['start 3/0 @1', 'malformed @5'])
  // and stays so: nothing after a malformed header is MQTT
  expect(s.scan(Buffer.from([0x30, 0x00]), 0)).toBe(FRAME_MALFORMED)
  expect(frameEnd(bad, 0)).toBe(-1)
  // a fifth byte cut from the rest is found alike
  expect(events([bad.subarray(0, 3), bad.subarray(3)])).toEqual(['start 3/0 @1', 'malformed @5'])
})

test('a stream of packets cut at every byte position gives the same events', () => {
  const packets = [
    Buffer.from([0x10, 0x03, 1, 2, 3]), // a body of 3
    Buffer.from([0xc0, 0x00]), // PINGREQ: no body
    Buffer.concat([Buffer.from([0x30, ...encodeVarInt(128)]), Buffer.alloc(128, 7)]),
    Buffer.concat([Buffer.from([0x30, ...encodeVarInt(16_384)]), Buffer.alloc(16_384, 8)]),
    Buffer.from([0xe0, 0x00])
  ]
  const all = Buffer.concat(packets)
  const whole = events([all])
  expect(whole).toEqual([
    'start 1/0 @1', 'header 3+2 @2', 'end @5',
    'start 12/0 @6', 'header 0+2 @7', 'end @7',
    'start 3/0 @8', 'header 128+3 @10', 'end @138',
    'start 3/0 @139', 'header 16384+4 @142', 'end @16526',
    'start 14/0 @16527', 'header 0+2 @16528', 'end @16528'
  ])
  for (let cut = 0; cut <= all.length; cut++) {
    expect([cut, events([all.subarray(0, cut), all.subarray(cut)])]).toEqual([cut, whole])
  }
  // one byte at a time, headers included
  const head = all.subarray(0, 200)
  const bytes = [...head].map(b => Buffer.from([b]))
  expect(events(bytes)).toEqual(events([head]))
})

test('frameEnd: complete, incomplete and at an offset', () => {
  // PINGRESP, then a PUBACK with 2 bytes of body
  const buf = Buffer.from([0xd0, 0x00, 0x40, 0x02, 0x00, 0x01])
  expect(frameEnd(buf, 0)).toBe(2)
  expect(frameEnd(buf, 2)).toBe(6)
  expect(frameEnd(buf.subarray(0, 5), 2)).toBe(6) // beyond the buffer: not complete in it
  expect(frameEnd(Buffer.from([0x30]), 0)).toBe(-1)
  expect(frameEnd(Buffer.from([0x30, 0x80]), 0)).toBe(-1)
  expect(frameEnd(Buffer.from([0x30, 0x80, 0x01]), 0)).toBe(131)
})

test('countPackets counts the packets that start in a batch, whatever its chunks', () => {
  const batch = Buffer.concat([
    Buffer.from([0x20, 0x02, 0x00, 0x00]), // CONNACK
    Buffer.concat([Buffer.from([0x30, ...encodeVarInt(300)]), Buffer.alloc(300)]),
    Buffer.from([0xd0, 0x00])
  ])
  expect(countPackets([batch])).toBe(3)
  for (let cut = 0; cut <= batch.length; cut++) {
    expect(countPackets([batch.subarray(0, cut), batch.subarray(cut)])).toBe(3)
  }
  expect(countPackets([])).toBe(0)
  // each batch starts afresh, even after one that ended inside a packet
  expect(countPackets([batch.subarray(0, 7)])).toBe(2)
  expect(countPackets([Buffer.from([0xd0, 0x00])])).toBe(1)
})
