/**
 * Coalesces what aedes writes to one connection during one turn of the event loop into one socket write.
 *
 * aedes delivers every message to every subscriber in its own `setImmediate` callback and writes it with
 * mqtt-packet's `writeToStream`, which corks the stream and uncorks it on `process.nextTick`, that is, right after
 * that one callback. So every delivered message costs one `writev` system call plus a libuv write request:
 * profiling a QoS 0 fan-in (5 publishers, one subscriber, `node --cpu-prof`) put 26% of Midge's CPU time under
 * `uncork` -> `writev`, the largest single cost. see issue 8.
 *
 * Here the first write of a turn corks the stream once more, and a `setImmediate` uncorks it: every packet
 * written by the immediates of this turn (hundreds under load) leaves in one `writev`. When idle the cost is one
 * extra immediate per write burst, well under a millisecond of added latency. `write()` keeps its return value
 * (the buffered length still counts against the high-water mark), so aedes' backpressure and drain handling are
 * unchanged; `end()` and `destroy()` flush or discard corked data as usual. Over WebSocket the turn's packets go out
 * as one binary frame.
 */
import type { Duplex } from 'node:stream'

type Chunk = { chunk: Buffer | string, encoding: BufferEncoding }
type WithWrite = Duplex & {
  _writev?: ((chunks: Chunk[], cb: (err?: Error | null) => void) => void) | null
  _write: (chunk: Buffer, encoding: BufferEncoding, cb: (err?: Error | null) => void) => void
}

export function coalesceWrites (stream: Duplex): void {
  if (typeof stream.cork !== 'function') return
  const s = stream as WithWrite
  if (!s._writev && typeof s._write === 'function') {
    // ws' createWebSocketStream has no _writev, so uncork would still hand the chunks to _write one by one, one
    // WebSocket frame each. One frame may carry several MQTT packets [MQTT-6.0.0-2]: send the turn's packets as one.
    s._writev = function writevAsOne (chunks, cb) {
      const bufs = chunks.map(c => typeof c.chunk === 'string' ? Buffer.from(c.chunk, c.encoding) : c.chunk)
      s._write(bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs), 'buffer' as BufferEncoding, cb)
    }
  }
  let corked = false
  const flush = (): void => {
    corked = false
    if (stream.writableCorked > 0) stream.uncork()
  }
  const write = stream.write
  stream.write = function coalescedWrite (this: Duplex, ...args: Parameters<Duplex['write']>): boolean {
    if (!corked && !stream.writableEnded && !stream.destroyed) {
      corked = true
      stream.cork()
      setImmediate(flush)
    }
    return write.apply(this, args)
  } as Duplex['write']
}
