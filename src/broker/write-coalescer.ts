/**
 * Coalesces what aedes writes to one connection during one turn of the event loop into one socket write of one
 * buffer.
 *
 * aedes delivers every message to every subscriber in its own `setImmediate` callback and writes it with
 * mqtt-packet's `writeToStream`, which writes a PUBLISH field by field (fixed header, length, topic length, topic,
 * payload: five `write()` calls), corks the stream and uncorks it on `process.nextTick`, that is, right after that
 * one callback. Left alone, every delivered message costs one `writev` system call with five tiny chunks plus a
 * libuv write request: profiling a QoS 0 fan-in (5 publishers, one subscriber, `node --cpu-prof`) put 26% of Midge's
 * CPU time under `uncork` -> `writev`. Corking the stream for the whole turn (this module's first version) made it
 * one `writev` per turn, but Node still kept one buffered-chunk record per field and handed the kernel one iovec per
 * field: `writev` and stream bookkeeping were still 20% of the busy time.
 *
 * Here the chunks of a turn are collected in an array and, in a `setImmediate`, concatenated and written with one
 * `write()`: one buffer, one iovec, one WebSocket frame (several MQTT packets in one frame are allowed,
 * [MQTT-6.0.0-2]). Chunks of 16 KiB or more are written as they are, in order, without being copied.
 *
 * Backpressure is kept: `write()` returns false once the collected bytes plus what the stream already buffers reach
 * its high-water mark, and a `drain` event follows (from the stream when its write of the batch returned false, or
 * emitted here once the batch is handed over when the stream took it without complaint). `end()` writes the
 * collected chunks first; after `end()` or `destroy()` writes go straight to the stream (which reports the error).
 * The broker's `WriteHooks` see each batch before it is written (it counts the packets sent in it, sys/wire.ts), may
 * replace the connection's first batch (it amends a v5 CONNACK, connack.ts) and may rewrite any batch, given as one
 * buffer (outgoing topic aliases, topic-alias-out.ts; v5 acknowledgement codes, ack-codes.ts).
 */
import type { Duplex } from 'node:stream'

type WriteCb = (err?: Error | null) => void
type WriteFn = (chunk: unknown, encoding?: unknown, cb?: unknown) => boolean

/** Chunks at least this large are not copied into the turn's buffer. */
const COPY_LIMIT = 16 * 1024

/**
 * What happens around every connection's batches: one object for all the connections of a broker, told which
 * stream each call is about (the per-connection state it needs is kept where the broker keeps it).
 */
export interface WriteHooks {
  /** Sees each batch before it is written. */
  onBatch?: (chunks: readonly Buffer[]) => void
  /** May replace the connection's first batch; undefined leaves the batch alone. */
  first?: (stream: Duplex, first: Buffer) => Buffer | undefined
  /** Asked at every batch: `wanted` true makes the batch one buffer, replaced by what `rewrite` returns. */
  each?: { wanted: (stream: Duplex) => boolean, rewrite: (stream: Duplex, batch: Buffer) => Buffer }
}

const NO_HOOKS: WriteHooks = {}

/** One connection's batch of the current turn (no closures per connection: the functions below are shared). */
class Batch {
  parts: Buffer[] = []
  bytes = 0
  callbacks: WriteCb[] | undefined = undefined
  scheduled = false
  /** write() returned false to someone for this batch: a `drain` is owed. */
  owed = false
  /** The next batch is the connection's first. */
  first = true
  constructor (
    readonly stream: Duplex,
    readonly write: WriteFn,
    readonly end: (...args: unknown[]) => Duplex,
    readonly hooks: WriteHooks
  ) {}
}

const kBatch = Symbol('write batch')
type CoalescedStream = Duplex & { [kBatch]?: Batch }

export function coalesceWrites (stream: Duplex, hooks: WriteHooks = NO_HOOKS): void {
  const s = stream as CoalescedStream
  s[kBatch] = new Batch(stream, stream.write as WriteFn, stream.end as (...args: unknown[]) => Duplex, hooks)
  stream.write = coalescedWrite as Duplex['write']
  stream.end = coalescedEnd as Duplex['end']
}

/**
 * Writes what this turn has collected now, for a last packet that must leave before a close the caller cannot
 * delay (aedes destroys the socket right after its keep-alive timeout event). mqtt-packet corks the stream for the
 * rest of the tick; a corked write would be discarded by that destroy, so the stream is uncorked too.
 */
export function flushWrites (stream: Duplex): void {
  const b = (stream as CoalescedStream)[kBatch]
  if (b !== undefined && b.parts.length > 0) flush(b)
  while (stream.writableCorked > 0) stream.uncork()
}

function flush (b: Batch): void {
  b.scheduled = false
  if (b.parts.length === 0) return
  const { stream, write, hooks } = b
  if (b.first) {
    b.first = false
    if (hooks.first !== undefined) {
      const out = hooks.first(stream, b.parts.length === 1 ? b.parts[0]! : Buffer.concat(b.parts, b.bytes))
      if (out !== undefined) b.parts = [out]
    }
  }
  if (hooks.each?.wanted(stream) === true) b.parts = [hooks.each.rewrite(stream, b.parts.length === 1 ? b.parts[0]! : Buffer.concat(b.parts))]
  const batch = b.parts
  const cbs = b.callbacks
  b.parts = []
  b.bytes = 0
  b.callbacks = undefined
  if (stream.destroyed) {
    if (cbs !== undefined) for (const cb of cbs) cb(new Error('write after destroy'))
    return
  }
  hooks.onBatch?.(batch)
  const done: WriteCb | undefined = cbs === undefined ? undefined : err => { for (const cb of cbs) cb(err) }
  let ok = true
  let run = 0
  let runBytes = 0
  const writeRun = (upTo: number, last: boolean): void => {
    if (upTo === run) return
    const chunk = upTo - run === 1 ? batch[run]! : Buffer.concat(batch.slice(run, upTo), runBytes)
    ok = write.call(stream, chunk, undefined, last ? done : undefined) && ok
    run = upTo
    runBytes = 0
  }
  for (let i = 0; i < batch.length; i++) {
    const c = batch[i]!
    if (c.length >= COPY_LIMIT) {
      writeRun(i, false)
      run = i
      runBytes = c.length
      writeRun(i + 1, i + 1 === batch.length)
    } else {
      runBytes += c.length
    }
  }
  writeRun(batch.length, true)
  if (b.owed) {
    b.owed = false
    // the stream took the batch below its high-water mark: it will not emit drain itself
    if (ok) stream.emit('drain')
  }
}

function coalescedWrite (this: CoalescedStream, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
  const b = this[kBatch]!
  if (this.writableEnded || this.destroyed) return b.write.call(this, chunk, encoding, cb)
  if (typeof encoding === 'function') { cb = encoding; encoding = undefined }
  const buf = typeof chunk === 'string'
    ? Buffer.from(chunk, (encoding as BufferEncoding | undefined) ?? 'utf8')
    : Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array)
  b.parts.push(buf)
  b.bytes += buf.length
  if (typeof cb === 'function') (b.callbacks ??= []).push(cb as WriteCb)
  if (!b.scheduled) {
    b.scheduled = true
    setImmediate(flush, b)
  }
  if (b.bytes + this.writableLength < this.writableHighWaterMark) return true
  b.owed = true
  return false
}

function coalescedEnd (this: CoalescedStream, ...args: unknown[]): Duplex {
  const b = this[kBatch]!
  flush(b)
  return b.end.apply(this, args)
}
