/**
 * The one step between a connection's bytes and aedes' MQTT parser. aedes pulls bytes with `conn.read()`; the
 * framer replaces that one method, reads the fixed headers as the bytes go by (mqtt/frames.ts), and for each packet,
 * in this order:
 *
 *  1. guard: the first packet must be CONNECT [MQTT-3.1.0-1], with protocol level 3 (MQIsdp), 4 or 5 (MQTT) and one
 *     the listener accepts (`accept_protocol_versions`; refused with CONNACK 1, 0x84 to a v5 client [MQTT-3.1.2-2],
 *     which mqtt-packet's parser would not let aedes do: it drops the connection silently); a remaining length no
 *     larger than the limit, refused from its header, before the body is buffered; no fifth length byte [MQTT-2.2.3].
 *     A violation closes the connection (`onViolation`) and aedes gets nothing more;
 *  2. counter: one per packet that passed the guard ($SYS/broker/messages/received);
 *  3. enhanced authentication, on a listener whose plug-in has `enhancedAuth`: the CONNECT, whole, goes to its
 *     stage (enhanced-auth.ts), which either steps aside or holds the connection for an MQTT 5 AUTH exchange; during
 *     the exchange every packet goes to the stage, whole, and aedes gets nothing until the stage releases the
 *     CONNECT it should see; after it, AUTH packets go to the stage and aedes reads the others in order;
 *  4. read cap: at most `maxPackets` packets per read for aedes. aedes dispatches every packet of a read in one
 *     event-loop turn; with tiny packets that was ~3000 publishes per connection in one turn, and 200 flooding
 *     connections stalled the loop for seconds (23-flood). The cut is made only before a packet that is complete in
 *     the chunk, so what is held back always gives aedes a packet to handle, whose end makes it read again
 *     (read-loop.ts lets no 'readable' event through while a batch is in progress); held-back bytes are handed out
 *     on that read, so TCP backpressure still applies.
 *
 * Held-back packets are checked and counted when they are handed out, so every step sees exactly the bytes aedes
 * gets. Bodies are skipped by arithmetic and nothing is copied, except the packets handed to enhanced
 * authentication (and the bytes around one taken out of a read).
 */
import type { Duplex } from 'node:stream'
import { FrameScanner, frameEnd, FRAME_END, FRAME_HEADER, FRAME_MORE, FRAME_START } from '../mqtt/frames.js'

export class GuardError extends Error {
  constructor (message: string, readonly reason: 'not-connect' | 'too-large' | 'malformed' | 'bad-protocol', readonly protocolLevel?: number) {
    super(message)
    this.name = 'GuardError'
  }
}

/** One object per listener, shared by all its connections: `onViolation` is told which stream broke the rules. */
export interface FramerOptions {
  /** Largest remaining length accepted, in bytes. */
  maxRemainingLength: number
  /** Protocol levels this listener accepts (3 = MQTT 3.1, 4 = 3.1.1, 5 = 5.0). */
  acceptVersions: readonly number[]
  /** Packets aedes gets at most per read. */
  maxPackets: number
  /** Incremented once per packet that passed the guard. */
  counter?: { count: number }
  onViolation: (err: GuardError, stream: Duplex) => void
}

/** Enhanced authentication's side of the framer: it gets whole packets only. */
export interface AuthStage {
  /** The first packet, a CONNECT: true to hold the connection for an exchange (until `open` or `stop`), false to step aside for good. */
  connect (packet: Buffer): boolean
  /** A packet that arrived while the exchange at CONNECT runs. */
  held (packet: Buffer): void
  /** An AUTH packet after the exchange. */
  auth (packet: Buffer): void
}

/** What the stage may ask of the framer. */
export interface FramerControl {
  /** The exchange allowed the client: aedes reads `connect` next, then what followed the client's CONNECT. */
  open (connect: Buffer): void
  /** The connection is being closed: aedes reads nothing more. */
  stop (): void
}

const CONNECT = 1
const AUTH = 15
const MQTT_NAME = [0x4d, 0x51, 0x54, 0x54] as const
const MQISDP_NAME = [0x4d, 0x51, 0x49, 0x73, 0x64, 0x70] as const
/** `probeNames` bits: the protocol name read so far can still be MQTT, MQIsdp. */
const MAYBE_MQTT = 1
const MAYBE_MQISDP = 2

const AUTH_CONNECT = 1
const AUTH_EXCHANGE = 2
const AUTH_OPEN = 3

type ReadFn = (size?: number) => unknown

/** Enhanced authentication's state in the framer: only on a connection whose listener has it. */
class AuthRoute {
  phase = AUTH_CONNECT
  /** The current packet goes to the stage. */
  collecting = false
  /** Its bytes from earlier chunks. */
  parts: Buffer[] | null = null
  /** Bytes the stage released, for aedes' next read. */
  release: Buffer | null = null
  stage!: AuthStage
  constructor (readonly stream: Duplex) {}
}

/**
 * One connection's framer. It extends the scanner so that a connection holds one object for it (its size counts in
 * the per-connection memory), and its read function is shared by all connections.
 */
class InboundFramer extends FrameScanner implements FramerControl {
  /** Bytes the read cap held back, for aedes' next read. */
  pending: Buffer | null = null
  dead = false
  first = true
  /** The next CONNECT variable-header byte to check (protocol name and level), -1 when none. */
  probe = -1
  probeNameLength = 0
  probeNames = 0
  /** Undefined where the listener has no enhanced authentication, or once it stepped aside. */
  auth: AuthRoute | undefined = undefined

  constructor (readonly inner: ReadFn, readonly opts: FramerOptions) { super() }

  open (connect: Buffer): void {
    const auth = this.auth
    if (this.dead || auth === undefined) return
    auth.phase = AUTH_OPEN
    let release = connect
    // a packet begun during the exchange that is not AUTH is aedes' from here on (and a protocol error it answers)
    if (auth.collecting && this.type !== AUTH) {
      if (auth.parts !== null) release = Buffer.concat([connect, ...auth.parts])
      auth.collecting = false
      auth.parts = null
    }
    auth.release = release
    // aedes reads on a 'readable' event: the socket has no new bytes to raise one
    auth.stream.emit('readable')
  }

  stop (): void { this.dead = true }

  violate (err: GuardError, stream: Duplex): null {
    this.dead = true
    this.opts.onViolation(err, stream)
    return null
  }

  /** One chunk: what of it aedes reads now (null: nothing); a cut leaves the rest in `pending`. */
  frame (buf: Buffer, stream: Duplex): Buffer | null {
    const opts = this.opts
    let auth = this.auth
    const n = buf.length
    let pos = 0
    /** Start of the bytes for aedes not yet in `pieces`. */
    let from = 0
    /** Bytes for aedes, when packets were taken out between them. */
    let pieces: Buffer[] | null = null
    /** Where the collected packet's bytes start in this chunk. */
    let collectFrom = 0
    let handed = 0
    if (this.probe >= 0 && this.inBody) {
      const err = this.probeConnect(buf, 0, Math.min(n, this.left))
      if (err !== undefined) return this.violate(err, stream)
    }
    for (;;) {
      const ev = this.scan(buf, pos)
      pos = this.at
      if (ev === FRAME_MORE) break
      if (ev === FRAME_START) {
        if (this.first) {
          this.first = false
          if (this.type !== CONNECT) return this.violate(new GuardError(`first packet is not CONNECT (type ${this.type})`, 'not-connect'), stream)
          // other flags are malformed [MQTT-2.2.2-2]: the parser refuses those itself
          if (this.flags === 0) this.probe = 0
        }
        if (auth !== undefined && (auth.phase !== AUTH_OPEN || this.type === AUTH)) {
          const start = pos - 1
          if (start > from) (pieces ??= []).push(buf.subarray(from, start))
          from = start
          collectFrom = start
          auth.collecting = true
        }
        continue
      }
      if (ev === FRAME_HEADER) {
        if (this.probe >= 0) {
          const err = this.probeConnect(buf, pos, Math.min(n, pos + this.remaining))
          if (err !== undefined) return this.violate(err, stream)
        }
        if (this.remaining > opts.maxRemainingLength) {
          return this.violate(new GuardError(`packet of ${this.remaining} bytes exceeds the limit of ${opts.maxRemainingLength}`, 'too-large'), stream)
        }
        if (opts.counter !== undefined) opts.counter.count++
        continue
      }
      if (ev === FRAME_END) {
        this.probe = -1
        if (auth?.collecting === true) {
          const parts = auth.parts
          let packet: Buffer
          if (parts === null) packet = buf.subarray(collectFrom, pos)
          else { parts.push(buf.subarray(0, pos)); packet = Buffer.concat(parts) }
          auth.parts = null
          auth.collecting = false
          from = pos
          if (this.toStage(auth, packet)) {
            // the CONNECT is aedes' after all: where it began in this chunk, or whole in front of the rest
            if (parts === null) from = collectFrom
            else (pieces ??= []).push(packet)
            handed++
            auth = undefined
          }
          if (this.dead) return null
          continue
        }
        handed++
        if (handed >= opts.maxPackets && pos < n) {
          const end = frameEnd(buf, pos)
          if (end !== -1 && end <= n) {
            this.pending = buf.subarray(pos)
            return output(buf, from, pos, pieces)
          }
        }
        continue
      }
      // FRAME_MALFORMED, the only event left
      return this.violate(new GuardError('malformed remaining length', 'malformed'), stream)
    }
    let end = n
    if (auth?.collecting === true) {
      if (collectFrom < n) (auth.parts ??= []).push(buf.subarray(collectFrom, n))
      end = collectFrom
    }
    return output(buf, from, end, pieces)
  }

  /** Hands a whole packet to enhanced authentication; true if it goes to aedes instead (a CONNECT it stepped aside for). */
  toStage (auth: AuthRoute, packet: Buffer): boolean {
    if (auth.phase === AUTH_CONNECT) {
      if (auth.stage.connect(packet)) { auth.phase = AUTH_EXCHANGE; return false }
      // stepped aside for good: every packet is aedes'
      this.auth = undefined
      return true
    }
    if (auth.phase === AUTH_EXCHANGE) auth.stage.held(packet)
    else auth.stage.auth(packet)
    return false
  }

  /**
   * Checks the CONNECT's protocol name and level in `buf[from, to)`, the part of its variable header in this chunk:
   * byte by byte, so that a CONNECT cut anywhere is checked alike. An unknown protocol *name* is not MQTT at all:
   * left to the parser, which closes the connection.
   */
  probeConnect (buf: Buffer, from: number, to: number): GuardError | undefined {
    for (let i = from; i < to && this.probe >= 0; i++) {
      const byte = buf[i]!
      const k = this.probe++
      if (k === 0) { this.probeNameLength = byte << 8; continue }
      if (k === 1) {
        this.probeNameLength |= byte
        this.probeNames = this.probeNameLength === MQTT_NAME.length ? MAYBE_MQTT : this.probeNameLength === MQISDP_NAME.length ? MAYBE_MQISDP : 0
        if (this.probeNames === 0) this.probe = -1
        continue
      }
      const at = k - 2
      if (at < this.probeNameLength) {
        if ((this.probeNames & MAYBE_MQTT) !== 0 && MQTT_NAME[at] !== byte) this.probeNames &= ~MAYBE_MQTT
        if ((this.probeNames & MAYBE_MQISDP) !== 0 && MQISDP_NAME[at] !== byte) this.probeNames &= ~MAYBE_MQISDP
        if (this.probeNames === 0) this.probe = -1
        continue
      }
      this.probe = -1
      // the top bit is mosquitto's private-bridge flag (src/bridge/peers.ts)
      const level = byte & 0x7f
      const mqtt = this.probeNames === MAYBE_MQTT
      const ok = mqtt ? level === 4 || level === 5 : level === 3
      if (!ok || !this.opts.acceptVersions.includes(level)) {
        return new GuardError(`unsupported protocol ${mqtt ? 'MQTT' : 'MQIsdp'} level ${level}`, 'bad-protocol', level)
      }
    }
    return undefined
  }
}

/** `buf[from, end)` after `pieces`, without a copy when nothing was taken out. */
function output (buf: Buffer, from: number, end: number, pieces: Buffer[] | null): Buffer | null {
  if (pieces === null) return from >= end ? null : from === 0 && end === buf.length ? buf : buf.subarray(from, end)
  if (end > from) pieces.push(buf.subarray(from, end))
  return pieces.length === 0 ? null : pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces)
}

const kFramer = Symbol('inbound framer')
type FramedStream = Duplex & { [kFramer]?: InboundFramer }

/**
 * Installs the framer on `stream.read`, once per connection, before aedes handles the stream. `stage` builds the
 * connection's enhanced-authentication stage, where the listener has one; it is given the framer to release or
 * stop the connection.
 */
export function installInboundFramer (stream: Duplex, opts: FramerOptions, stage?: (framer: FramerControl) => AuthStage): void {
  const s = stream as FramedStream
  const framer = new InboundFramer(stream.read, opts)
  if (stage !== undefined) {
    const auth = new AuthRoute(stream)
    auth.stage = stage(framer)
    framer.auth = auth
  }
  s[kFramer] = framer
  s.read = framedRead
}

function framedRead (this: FramedStream, size?: number): Buffer | null {
  const f = this[kFramer]!
  if (f.dead) return null
  // Node's own read(0) calls (maybeReadMore, 'readable' set-up) discard what they get: never hand them held-back
  // bytes. Without this, held-back packets vanished: QoS 2 publishes never completed and the parser lost sync.
  if (size === 0) return f.inner.call(this, 0) as Buffer | null
  let out: Buffer | null = null
  const auth = f.auth
  if (auth !== undefined) { out = auth.release; auth.release = null }
  for (;;) {
    let buf = f.pending
    if (buf !== null) f.pending = null
    else {
      buf = f.inner.call(this, size) as Buffer | null
      if (buf === null) return out
    }
    const got = f.frame(buf, this)
    if (f.dead) return null
    if (got !== null) return out === null ? got : Buffer.concat([out, got])
    // every byte went to enhanced authentication: read on, since held-back bytes bring no 'readable' event of their own
  }
}
