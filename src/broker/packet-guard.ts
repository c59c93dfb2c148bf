/**
 * A header scanner in front of aedes' MQTT parser. aedes pulls bytes with `conn.read()`; the guard wraps that
 * one method on the connection's stream, reads only the fixed headers (type byte + remaining length) as the
 * bytes go by, and destroys the connection before the parser buffers anything it should refuse:
 *  - a first packet that is not CONNECT [MQTT-3.1.0-1];
 *  - a packet whose remaining length is larger than the limit (huge headers are refused before their payload
 *    is buffered);
 *  - a malformed remaining length (more than 4 bytes) [MQTT-2.2.3];
 *  - a CONNECT with a protocol level other than 3 (MQIsdp), 4 or 5 (MQTT), or one the listener does not accept
 *    (`accept_protocol_versions`): the broker answers CONNACK 1 (0x84 to a v5 client) [MQTT-3.1.2-2], which
 *    mqtt-packet's parser would not let aedes do (it drops the connection silently).
 * It costs a few integer operations per packet; payload bytes are skipped, not copied.
 */
import type { Duplex } from 'node:stream'

export class GuardError extends Error {
  constructor (message: string, readonly reason: 'not-connect' | 'too-large' | 'malformed' | 'bad-protocol', readonly protocolLevel?: number) {
    super(message)
    this.name = 'GuardError'
  }
}

const enum State { Type, Length, Body }

export interface GuardOptions {
  /** Largest remaining length accepted, in bytes. */
  maxRemainingLength: number
  /** Incremented once per packet header seen ($SYS/broker/messages/received). */
  counter?: { count: number }
  /** Protocol levels this listener accepts (3 = MQTT 3.1, 4 = 3.1.1, 5 = 5.0). */
  acceptVersions: readonly number[]
  onViolation: (err: GuardError, stream: Duplex) => void
}

type ReadFn = (size?: number) => unknown

/** One connection's guard: where the scan is in the byte stream (no closures per connection). */
class Guard {
  state = State.Type
  first = true
  type = 0
  length = 0
  multiplier = 1
  lengthBytes = 0
  skip = 0
  dead = false
  constructor (readonly inner: ReadFn, readonly opts: GuardOptions) {}

  scan (buf: Buffer): GuardError | undefined {
    const opts = this.opts
    if (this.first && buf.length > 0 && buf[0] === 0x10) {
      const level = connectProtocolLevel(buf)
      if (level !== undefined && (!level.ok || !opts.acceptVersions.includes(level.level))) {
        return new GuardError(`unsupported protocol ${level.name} level ${level.level}`, 'bad-protocol', level.level)
      }
    }
    let i = 0
    const n = buf.length
    while (i < n) {
      if (this.state === State.Body) {
        const step = Math.min(this.skip, n - i)
        i += step
        this.skip -= step
        if (this.skip === 0) this.state = State.Type
        continue
      }
      const byte = buf[i++]!
      if (this.state === State.Type) {
        this.type = byte >> 4
        if (this.first) {
          this.first = false
          if (this.type !== 1) return new GuardError(`first packet is not CONNECT (type ${this.type})`, 'not-connect')
        }
        this.state = State.Length
        this.length = 0
        this.multiplier = 1
        this.lengthBytes = 0
        continue
      }
      // State.Length: variable byte integer
      this.length += (byte & 0x7f) * this.multiplier
      this.multiplier *= 128
      this.lengthBytes++
      if ((byte & 0x80) !== 0) {
        if (this.lengthBytes >= 4) return new GuardError('malformed remaining length', 'malformed')
        continue
      }
      if (this.length > opts.maxRemainingLength) {
        return new GuardError(`packet of ${this.length} bytes exceeds the limit of ${opts.maxRemainingLength}`, 'too-large')
      }
      if (opts.counter) opts.counter.count++
      if (this.length === 0) this.state = State.Type
      else { this.state = State.Body; this.skip = this.length }
    }
    return undefined
  }
}

const kGuard = Symbol('packet guard')
type GuardedStream = Duplex & { [kGuard]?: Guard }

/** `opts` may be shared by every connection of a listener: `onViolation` is told which stream broke the rules. */
export function installPacketGuard (stream: Duplex, opts: GuardOptions): void {
  const s = stream as GuardedStream
  s[kGuard] = new Guard(stream.read, opts)
  s.read = guardedRead
}

function guardedRead (this: GuardedStream, size?: number): unknown {
  const g = this[kGuard]!
  if (g.dead) return null
  const buf = g.inner.call(this, size) as Buffer | null
  if (buf !== null) {
    const err = g.scan(buf)
    if (err) {
      g.dead = true
      g.opts.onViolation(err, this)
      return null
    }
  }
  return buf
}

/** Protocol name and level of a CONNECT at the start of `buf`, when the chunk holds them. */
function connectProtocolLevel (buf: Buffer): { ok: boolean, name: string, level: number } | undefined {
  let i = 1
  while (i < buf.length && i < 5 && (buf[i]! & 0x80) !== 0) i++
  i++
  if (i + 2 > buf.length) return undefined
  const nameLen = buf.readUInt16BE(i)
  i += 2
  if (i + nameLen + 1 > buf.length) return undefined
  const name = buf.toString('latin1', i, i + nameLen)
  const level = buf[i + nameLen]!
  // the top bit is mosquitto's private-bridge flag (src/bridge/peers.ts)
  const base = level & 0x7f
  const ok = (name === 'MQTT' && (base === 4 || base === 5)) || (name === 'MQIsdp' && base === 3)
  // an unknown protocol *name* is not MQTT at all: leave it to the parser, which closes the connection
  if (name !== 'MQTT' && name !== 'MQIsdp') return undefined
  return { ok, name, level: base }
}
