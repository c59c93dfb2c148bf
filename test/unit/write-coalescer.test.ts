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

test('writes from the immediates of one turn leave in one batch, in order', async () => {
  const { stream, batches } = recorder()
  coalesceWrites(stream)
  await Promise.all(['a', 'b', 'c', 'd'].map(t => aedesStyleWrite(stream, t)))
  expect(batches).toEqual([])
  await immediate()
  expect(batches).toEqual([['a', 'b', 'c', 'd']])
  // the next burst is a new batch
  await Promise.all(['e', 'f'].map(t => aedesStyleWrite(stream, t)))
  await immediate()
  expect(batches).toEqual([['a', 'b', 'c', 'd'], ['e', 'f']])
})

test('write() still reports backpressure, and drain follows the flush', async () => {
  const { stream, batches } = recorder({ highWaterMark: 4 })
  coalesceWrites(stream)
  expect(stream.write('12')).toBe(true)
  expect(stream.write('345')).toBe(false) // 5 bytes buffered > highWaterMark 4
  const drained = once(stream, 'drain')
  await drained
  expect(batches).toEqual([['12', '345']])
})

test('end() flushes what is corked; writes after a flush are not lost', async () => {
  const { stream, batches } = recorder()
  coalesceWrites(stream)
  stream.write('x')
  stream.write('y')
  stream.end('z')
  await once(stream, 'finish')
  expect(batches.flat()).toEqual(['x', 'y', 'z'])
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
