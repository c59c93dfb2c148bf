import { test, expect } from 'vitest'
import { Duplex } from 'node:stream'
import { once } from 'node:events'
import { coalesceWrites } from '../../src/broker/write-coalescer.js'

/** A Duplex that records every batch handed to the "socket" and completes writes on demand. */
function recorder (opts: { highWaterMark?: number } = {}): { stream: Duplex, batches: string[][], release: () => void } {
  const batches: string[][] = []
  let held: Array<() => void> = []
  let hold = false
  const stream = new Duplex({
    highWaterMark: opts.highWaterMark ?? 16 * 1024,
    read () {},
    writev (chunks, cb) {
      batches.push(chunks.map(c => (c.chunk as Buffer).toString()))
      if (hold) held.push(() => cb())
      else cb()
    },
    write (chunk: Buffer, _enc, cb) {
      batches.push([chunk.toString()])
      if (hold) held.push(() => cb())
      else cb()
    }
  })
  return {
    stream,
    batches,
    release: () => { hold = false; const h = held; held = []; for (const f of h) f() }
  }
}

const immediate = (): Promise<void> => new Promise(resolve => setImmediate(resolve))

/** What aedes does per delivered message: in its own immediate, mqtt-packet corks, writes, uncorks on nextTick. */
function aedesStyleWrite (s: Duplex, text: string): Promise<boolean> {
  return new Promise(resolve => setImmediate(() => {
    s.cork()
    const r = s.write(text)
    process.nextTick(() => s.uncork())
    resolve(r)
  }))
}

test('without the coalescer, aedes-style writes reach the socket one message per batch (the cost it removes)', async () => {
  const { stream, batches } = recorder()
  await Promise.all(['a', 'b', 'c'].map(t => aedesStyleWrite(stream, t)))
  await immediate()
  expect(batches).toEqual([['a'], ['b'], ['c']])
})

test('writes from the immediates of one turn leave as one buffer, in order', async () => {
  const { stream, batches } = recorder()
  coalesceWrites(stream)
  await Promise.all(['a', 'b', 'c', 'd'].map(t => aedesStyleWrite(stream, t)))
  expect(batches).toEqual([])
  await immediate()
  expect(batches).toEqual([['abcd']])
  // the next burst is a new batch
  await Promise.all(['e', 'f'].map(t => aedesStyleWrite(stream, t)))
  await immediate()
  expect(batches).toEqual([['abcd'], ['ef']])
})

test('a chunk of 16 KiB or more is written as it is (not copied), between the runs of small ones, in order', async () => {
  const { stream, batches } = recorder({ highWaterMark: 1024 * 1024 })
  coalesceWrites(stream)
  const big = Buffer.alloc(16 * 1024, 'x')
  stream.write('a')
  stream.write('b')
  stream.write(big)
  stream.write('c')
  await immediate()
  expect(batches.map(b => b.map(c => c.length === big.length ? 'BIG' : c))).toEqual([['ab'], ['BIG'], ['c']])
})

test('write callbacks are called once the batch is written', async () => {
  const { stream } = recorder()
  coalesceWrites(stream)
  const calls: string[] = []
  stream.write('a', () => calls.push('a'))
  stream.write('b', 'utf8', () => calls.push('b'))
  expect(calls).toEqual([])
  await immediate()
  await immediate()
  expect(calls).toEqual(['a', 'b'])
})

test('drain is owed and emitted even when the stream takes the batch below its high-water mark', async () => {
  // the stream held 3 bytes when write() said "full"; it wrote them out before the flush, so its own write of the
  // batch returns true and it would never emit drain: aedes waits for one
  const { stream, release } = recorder({ highWaterMark: 8 })
  stream.cork()
  stream.write('123') // buffered in the stream itself, before the coalescer
  coalesceWrites(stream)
  expect(stream.write('45678')).toBe(false) // 3 + 5 >= 8
  stream.uncork()
  release()
  await once(stream, 'drain')
})

test('write() still reports backpressure, and drain follows the flush', async () => {
  const { stream, batches } = recorder({ highWaterMark: 4 })
  coalesceWrites(stream)
  expect(stream.write('12')).toBe(true)
  expect(stream.write('345')).toBe(false) // 5 bytes buffered > highWaterMark 4
  const drained = once(stream, 'drain')
  await drained
  expect(batches).toEqual([['12345']])
})

test('end() flushes what is corked; writes after a flush are not lost', async () => {
  const { stream, batches } = recorder()
  coalesceWrites(stream)
  stream.write('x')
  stream.write('y')
  stream.end('z')
  await once(stream, 'finish')
  expect(batches.flat().join('')).toBe('xyz')
  await immediate() // the scheduled flush runs on an ended stream without throwing
})

test('a destroyed stream does not throw when the scheduled flush runs', async () => {
  const { stream } = recorder()
  coalesceWrites(stream)
  stream.on('error', () => {})
  stream.write('x')
  stream.destroy()
  await immediate()
  expect(stream.destroyed).toBe(true)
})

test('a stream without writev (a WebSocket stream) gets the turn\'s packets as one chunk, one frame', async () => {
  const frames: string[] = []
  const stream = new Duplex({
    read () {},
    write (chunk: Buffer, _enc, cb) { frames.push(chunk.toString()); cb() }
  })
  coalesceWrites(stream)
  await Promise.all(['p1', 'p2', 'p3'].map(t => aedesStyleWrite(stream, t)))
  await immediate()
  expect(frames).toEqual(['p1p2p3'])
  stream.write('alone')
  await immediate()
  expect(frames).toEqual(['p1p2p3', 'alone'])
})
