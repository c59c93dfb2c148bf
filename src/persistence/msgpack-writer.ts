/**
 * msgpack-lite's encoding of a stored packet, byte for byte, written in one pass that also builds what
 * `msgpack.decode` would give back for it.
 *
 * aedes-persistence-level stores every value with msgpack-lite (level-layout.ts); Midge writes the outgoing queue
 * in its place (outgoing-queue.ts) and must write the same bytes. msgpack-lite goes through a generic encoder (a
 * writer per type and per token, a growing buffer list): profiled (`node --cpu-prof`, durable-q1-p10), its
 * encoding was 11% of the broker's busy time for two packets per message. The choices below are msgpack-lite
 * 0.1.27's (`write-type.js`, `write-token.js`): integers that fit 32 bits in the smallest int form, every other
 * number as a float64, `str 8` from 32 bytes, `bin 8` only below 255 bytes, maps of `Object.keys`, `undefined`,
 * functions and symbols as nil. A value msgpack-lite writes in a way of its own (an extension type: a Date, an
 * Error, a typed array, a boxed primitive) is not written here: `write` answers `undefined` and the caller uses
 * msgpack-lite. Unit test packet-codec compares the bytes with msgpack-lite's.
 */

/** Classes msgpack-lite writes as extension types or special values (by constructor name, as it looks them up). */
const SPECIAL = new Set(['Error', 'EvalError', 'RangeError', 'ReferenceError', 'SyntaxError', 'TypeError', 'URIError',
  'RegExp', 'Boolean', 'String', 'Date', 'Number', 'ArrayBuffer', 'DataView', 'Map', 'Set', 'Uint64BE', 'Int64BE'])

/** A value this writer leaves to msgpack-lite. */
const UNLIKE = Symbol('unlike')

const SCRATCH_BYTES = 64 * 1024

export interface Written {
  bytes: Buffer
  /** What `msgpack.decode(bytes)` gives: copied objects and arrays, the same strings, Buffers shared (never written to). */
  decoded: unknown
}

export class MsgpackWriter {
  private buf = Buffer.allocUnsafe(SCRATCH_BYTES)
  private pos = 0

  /** The bytes and decoded form of `value`, or undefined if msgpack-lite writes part of it in a way of its own. */
  write (value: unknown): Written | undefined {
    this.pos = 0
    const decoded = this.value(value)
    const n = this.pos
    const src = this.buf
    // a large payload does not keep its scratch space
    if (src.length > SCRATCH_BYTES) this.buf = Buffer.allocUnsafe(SCRATCH_BYTES)
    if (decoded === UNLIKE) return undefined
    const bytes = Buffer.allocUnsafe(n)
    src.copy(bytes, 0, 0, n)
    return { bytes, decoded }
  }

  private room (n: number): void {
    if (this.pos + n <= this.buf.length) return
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n))
    this.buf.copy(grown, 0, 0, this.pos)
    this.buf = grown
  }

  private byte (b: number): void {
    this.room(1)
    this.buf[this.pos++] = b
  }

  private value (v: unknown): unknown {
    switch (typeof v) {
      case 'string': this.string(v); return v
      case 'number': this.number(v); return v === 0 ? 0 : v
      case 'boolean': this.byte(v ? 0xc3 : 0xc2); return v
      case 'undefined': case 'function': case 'symbol': this.byte(0xc0); return null
      case 'object': return this.object(v)
      default: return UNLIKE
    }
  }

  private number (v: number): void {
    const i = v | 0
    this.room(9)
    const b = this.buf
    let p = this.pos
    if (v !== i) {
      b[p] = 0xcb
      b.writeDoubleBE(v, p + 1)
      p += 9
    } else if (i >= -0x20 && i <= 0x7f) {
      b[p++] = i & 0xff
    } else if (i >= 0) {
      if (i <= 0xff) { b[p] = 0xcc; b[p + 1] = i; p += 2 } else if (i <= 0xffff) { b[p] = 0xcd; b.writeUInt16BE(i, p + 1); p += 3 } else { b[p] = 0xce; b.writeUInt32BE(i, p + 1); p += 5 }
    } else {
      if (i >= -0x80) { b[p] = 0xd0; b.writeInt8(i, p + 1); p += 2 } else if (i >= -0x8000) { b[p] = 0xd1; b.writeInt16BE(i, p + 1); p += 3 } else { b[p] = 0xd2; b.writeInt32BE(i, p + 1); p += 5 }
    }
    this.pos = p
  }

  private string (s: string): void {
    if (s.length < 32 && this.ascii(s)) return
    const max = s.length * 3
    this.room(5 + max)
    const b = this.buf
    // the header's size is guessed from the characters, as msgpack-lite does, and the bytes moved if it differs
    const guess = strHead(s.length)
    const start = this.pos + guess
    const n = s.length === 0 ? 0 : b.write(s, start)
    const head = strHead(n)
    if (head !== guess) b.copy(b, this.pos + head, start, start + n)
    let p = this.pos
    if (head === 1) b[p] = 0xa0 + n
    else if (head === 2) { b[p] = 0xd9; b[p + 1] = n } else if (head === 3) { b[p] = 0xda; b.writeUInt16BE(n, p + 1) } else { b[p] = 0xdb; b.writeUInt32BE(n, p + 1) }
    p += head + n
    this.pos = p
  }

  /** A short ASCII string (the packet's keys, most topics) written a character at a time: no call into Buffer#write. */
  private ascii (s: string): boolean {
    const n = s.length
    this.room(1 + n)
    const b = this.buf
    const p = this.pos + 1
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i)
      if (c > 0x7f) return false
      b[p + i] = c
    }
    b[this.pos] = 0xa0 + n
    this.pos = p + n
    return true
  }

  private object (v: object | null): unknown {
    if (v === null) { this.byte(0xc0); return null }
    if (Buffer.isBuffer(v)) {
      const n = v.length
      this.room(5 + n)
      const b = this.buf
      let p = this.pos
      if (n < 0xff) { b[p] = 0xc4; b[p + 1] = n; p += 2 } else if (n <= 0xffff) { b[p] = 0xc5; b.writeUInt16BE(n, p + 1); p += 3 } else { b[p] = 0xc6; b.writeUInt32BE(n, p + 1); p += 5 }
      v.copy(b, p)
      this.pos = p + n
      return v
    }
    if (Array.isArray(v)) {
      const n = v.length
      this.room(5)
      this.head(n, 0x90, 0xdc, 0xdd)
      const out = new Array<unknown>(n)
      for (let i = 0; i < n; i++) {
        const d = this.value(v[i])
        if (d === UNLIKE) return UNLIKE
        out[i] = d
      }
      return out
    }
    if (ArrayBuffer.isView(v)) return UNLIKE
    // msgpack-lite's own test: the name of whatever `constructor` holds (a wire string may be a key named so)
    const name = (v as { constructor?: { name?: unknown } | null }).constructor?.name
    if (typeof name === 'string' && SPECIAL.has(name)) return UNLIKE
    const keys = Object.keys(v)
    this.room(5)
    this.head(keys.length, 0x80, 0xde, 0xdf)
    const out: Record<string, unknown> = {}
    for (const k of keys) {
      this.string(k)
      const d = this.value((v as Record<string, unknown>)[k])
      if (d === UNLIKE) return UNLIKE
      out[k] = d
    }
    return out
  }

  /** A map or array header: fix form below 16 entries, then 16 and 32 bits. */
  private head (n: number, fix: number, h16: number, h32: number): void {
    const b = this.buf
    const p = this.pos
    if (n < 16) { b[p] = fix + n; this.pos = p + 1 } else if (n <= 0xffff) { b[p] = h16; b.writeUInt16BE(n, p + 1); this.pos = p + 3 } else { b[p] = h32; b.writeUInt32BE(n, p + 1); this.pos = p + 5 }
  }
}

function strHead (bytes: number): number {
  return bytes < 32 ? 1 : bytes <= 0xff ? 2 : bytes <= 0xffff ? 3 : 5
}
