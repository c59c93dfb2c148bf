/**
 * MQTT 5 enhanced authentication (AUTH packets, spec 4.12) in front of aedes. aedes 2.0.0-beta.1 refuses every
 * CONNECT with an Authentication Method (CONNACK 0x8C) before any hook is asked, and closes the connection on any
 * AUTH packet. So on a listener whose auth chain has an `enhancedAuth` plug-in, this gate is a stage of the
 * connection's inbound framer (inbound-framer.ts), which finds the packets in the byte stream, after its guard and
 * counter, and hands the gate whole packets:
 *
 * - the first packet, held back from aedes until it is complete; a CONNECT without an Authentication Method, or
 *   one of MQTT 3.1.x, goes on unchanged and the gate steps aside for good;
 * - runs the exchange for one with a method: the plug-in's `continue` answers go out as AUTH 0x18, the client's
 *   AUTH packets come back to it; `allow` hands aedes the CONNECT without the two authentication properties (so it
 *   accepts it) and records the outcome, which the hooks use instead of the password check and the CONNACK amendment
 *   turns into the CONNACK's Authentication Method and Data; `deny` is CONNACK 0x87, no plug-in for the method
 *   0x8C, a plug-in error 0x88 (as a throwing `authenticate` gives); a packet other than AUTH or DISCONNECT during
 *   the exchange, or an AUTH with another method or reason code, is answered with DISCONNECT 0x82, as mosquitto
 *   2.0.11 does;
 * - after the CONNACK, gets the client's AUTH packets, which the framer takes out of what aedes reads: AUTH 0x19
 *   with the same method re-authenticates through the same hook (AUTH 0x18 rounds, AUTH 0x00 at the end, DISCONNECT
 *   0x87 when refused); anything else is a protocol error (DISCONNECT 0x82) [MQTT-4.12.1-1].
 *
 * The gate writes below the write coalescer until the CONNACK, which must stay the coalescer's first batch to be
 * amended (connack.ts). A client that leaves a challenge unanswered for `timeoutMs` is disconnected; at CONNECT,
 * aedes' own connect timeout (which runs until aedes gets the CONNECT) may come first.
 */
import type { Duplex } from 'node:stream'
import mqttPacket, { type IAuthPacket, type IConnectPacket, type Packet } from 'mqtt-packet'
import type { Logger } from '../logging/logger.js'
import type { ConnectionContext } from '../listeners/types.js'
import type { EnhancedAuthAnswer, EnhancedAuthRequest } from '../auth/types.js'
import type { AuthStage, FramerControl } from './inbound-framer.js'

/**
 * Client AUTH answers held while the plug-in has not yet sent the challenge they answer: mosquitto 2.0 takes an AUTH
 * sent right behind the CONNECT as the answer to the first challenge, and so does Midge, up to this many.
 */
const MAX_EARLY_ANSWERS = 4
const AUTH_TYPE = 15
const DISCONNECT_TYPE = 14
const RC = {
  SUCCESS: 0x00,
  CONTINUE: 0x18,
  REAUTHENTICATE: 0x19,
  UNSPECIFIED: 0x80,
  PROTOCOL_ERROR: 0x82,
  NOT_AUTHORIZED: 0x87,
  SERVER_UNAVAILABLE: 0x88,
  BAD_METHOD: 0x8c
} as const

/** What a successful exchange at CONNECT leaves for the hooks and the CONNACK. */
export interface EnhancedAuthOutcome {
  method: string
  data?: Buffer
  /** The name the client acts as (the plug-in's), else the CONNECT's. */
  username?: string
}

export interface EnhancedAuthGateOptions {
  ctx: ConnectionContext
  /** The auth chain's first answer for one exchange. */
  start: (req: EnhancedAuthRequest) => Promise<EnhancedAuthAnswer>
  /** Called once the exchange at CONNECT allowed the client, before aedes reads the CONNECT. */
  accepted: (outcome: EnhancedAuthOutcome) => void
  /** A server DISCONNECT to the connected client (through aedes). */
  disconnect: (reasonCode: number) => void
  /** Longest wait for a client's answer to a challenge. */
  timeoutMs: number
  /** Packets the gate writes itself, for the packet counters. */
  sent?: (chunks: readonly Buffer[]) => void
  log: Logger
}

type Phase = 'connect' | 'exchange' | 'open' | 'off' | 'dead'

/** The one MQTT 5 packet in `bytes`, parsed; undefined when it does not parse. */
function parseOne (bytes: Buffer, protocolVersion?: 5): Packet | undefined {
  const parser = mqttPacket.parser(protocolVersion === undefined ? undefined : { protocolVersion })
  let out: Packet | undefined
  parser.on('packet', p => { out = p })
  // a packet that does not parse is answered by the caller (protocol error)
  parser.on('error', () => { out = undefined })
  parser.parse(bytes)
  return out
}

export function enhancedAuthStage (stream: Duplex, framer: FramerControl, opts: EnhancedAuthGateOptions): AuthStage {
  // below the coalescer (installed after this gate): the CONNACK must remain its first batch
  const rawWrite = stream.write.bind(stream)
  const rawEnd = stream.end.bind(stream)
  const { log, ctx } = opts
  let phase: Phase = 'connect'
  let method = ''
  let connect: IConnectPacket | undefined
  /** Waiting for the client's next AUTH of an exchange. */
  let waiter: ((p: IAuthPacket) => void) | undefined
  /** Answers that came before the challenge they answer. */
  const early: IAuthPacket[] = []
  let exchanging = false
  const aborter = new AbortController()
  stream.once('close', () => { aborter.abort(); phase = 'dead' })

  const close = (): void => {
    phase = 'dead'
    framer.stop()
    stream.destroy()
  }

  const writeAuth = (reasonCode: number, data: Buffer | undefined, below: boolean): void => {
    const buf = mqttPacket.generate({ cmd: 'auth', reasonCode, properties: { authenticationMethod: method, ...(data !== undefined ? { authenticationData: data } : {}) } } as IAuthPacket, { protocolVersion: 5 })
    if (below) { opts.sent?.([buf]); rawWrite(buf) } else stream.write(buf)
  }

  const onAuthBytes = (bytes: Buffer): void => {
    const p = parseOne(bytes, 5) as IAuthPacket | undefined
    const m = p?.properties?.authenticationMethod
    const rc = p?.reasonCode ?? RC.SUCCESS
    if (p === undefined || m === undefined) { protocolError('an AUTH packet without an Authentication Method'); return }
    if (m !== method) { protocolError(`an AUTH packet with the method "${m}" instead of "${method}"`); return }
    if (exchanging && rc === RC.CONTINUE) {
      const w = waiter
      waiter = undefined
      if (w !== undefined) { w(p); return }
      if (early.length < MAX_EARLY_ANSWERS) { early.push(p); return }
    }
    if (phase === 'open' && !exchanging && rc === RC.REAUTHENTICATE) { exchange(true, p.properties?.authenticationData); return }
    protocolError(`an AUTH packet with reason code 0x${rc.toString(16)} out of turn`)
  }

  /**
   * DISCONNECT 0x82, also before the CONNACK: the error is in a packet other than the CONNECT (spec 4.13.1), and
   * mosquitto 2.0.11 answers the same way.
   */
  const protocolError = (why: string): void => {
    log.info({ clientId: connect?.clientId, listener: ctx.listener.id, remoteAddress: ctx.remoteAddress }, `Client ${connect?.clientId ?? '?'} sent ${why}, disconnecting.`)
    if (phase === 'open') { opts.disconnect(RC.PROTOCOL_ERROR); return }
    if (phase === 'dead') return
    phase = 'dead'
    framer.stop()
    const buf = mqttPacket.generate({ cmd: 'disconnect', reasonCode: RC.PROTOCOL_ERROR }, { protocolVersion: 5 })
    opts.sent?.([buf])
    rawEnd(buf)
  }

  /** A refused CONNECT: the CONNACK with the reason, then the connection ends. */
  const refuse = (reasonCode: number): void => {
    if (phase === 'dead') return
    phase = 'dead'
    framer.stop()
    const buf = mqttPacket.generate({ cmd: 'connack', sessionPresent: false, reasonCode }, { protocolVersion: 5 })
    opts.sent?.([buf])
    rawEnd(buf)
  }

  const nextAuth = (): Promise<IAuthPacket | undefined> => new Promise(resolve => {
    const ready = early.shift()
    if (ready !== undefined) { resolve(ready); return }
    const t = setTimeout(() => { waiter = undefined; resolve(undefined) }, opts.timeoutMs)
    t.unref()
    aborter.signal.addEventListener('abort', () => { clearTimeout(t); resolve(undefined) }, { once: true })
    waiter = p => { clearTimeout(t); resolve(p) }
  })

  const exchange = (reauthenticate: boolean, data: Buffer | undefined): void => {
    exchanging = true
    const c = connect!
    const req: EnhancedAuthRequest = {
      clientId: c.clientId,
      ...(c.username !== undefined ? { username: c.username } : {}),
      ...(c.password !== undefined ? { password: c.password } : {}),
      method,
      ...(data !== undefined ? { data } : {}),
      conn: ctx,
      reauthenticate,
      signal: aborter.signal
    }
    // the connection can close during any await below
    const dead = (): boolean => phase === 'dead'
    const run = async (): Promise<void> => {
      let a = await opts.start(req)
      let first = true
      for (;;) {
        if (dead()) return
        if (a.result === 'continue') {
          writeAuth(RC.CONTINUE, a.data, !reauthenticate)
          const reply = await nextAuth()
          if (dead()) return
          if (reply === undefined) {
            log.info({ clientId: c.clientId, listener: ctx.listener.id, remoteAddress: ctx.remoteAddress }, `Client ${c.clientId} did not answer the authentication challenge, disconnecting.`)
            if (reauthenticate) opts.disconnect(RC.NOT_AUTHORIZED)
            else close()
            return
          }
          a = await a.next(reply.properties?.authenticationData)
          first = false
          continue
        }
        if (a.result === 'allow') {
          if (reauthenticate) {
            writeAuth(RC.SUCCESS, a.data, false)
            exchanging = false
            early.length = 0
            return
          }
          accept(a)
          return
        }
        // 'defer' after the first answer is a plug-in that lost track of its exchange: refused as not authorized
        const code = a.result === 'defer' && first ? RC.BAD_METHOD : RC.NOT_AUTHORIZED
        log.info({ clientId: c.clientId, listener: ctx.listener.id, remoteAddress: ctx.remoteAddress, method, reasonCode: code }, reauthenticate ? 're-authentication refused' : 'connection refused')
        if (reauthenticate) opts.disconnect(code)
        else refuse(code)
        return
      }
    }
    run().catch((err: Error) => {
      log.error({ clientId: c.clientId, method, err: err.message }, 'enhanced authentication failed with an error')
      if (phase === 'open') opts.disconnect(RC.UNSPECIFIED)
      else refuse(RC.SERVER_UNAVAILABLE)
    })
  }

  const accept = (a: { data?: Buffer, username?: string }): void => {
    const c = connect!
    const props = { ...c.properties }
    delete props.authenticationMethod
    delete props.authenticationData
    opts.accepted({ method, ...(a.data !== undefined ? { data: a.data } : {}), ...(a.username !== undefined ? { username: a.username } : (c.username !== undefined ? { username: c.username } : {})) })
    // aedes gets the CONNECT as if it had no method (it would refuse it), then whatever followed it
    const bytes = mqttPacket.generate({ ...c, properties: props }, { protocolVersion: 5 })
    phase = 'open'
    exchanging = false
    early.length = 0
    framer.open(bytes)
  }

  return {
    /** The first packet (a CONNECT: the framer's guard refused anything else). */
    connect (packet: Buffer): boolean {
      const p = parseOne(packet)
      const props = (p as IConnectPacket | undefined)?.properties
      // not enhanced authentication: aedes reads everything as it came
      if (p?.cmd !== 'connect' || p.protocolVersion !== 5 || props?.authenticationMethod === undefined) { phase = 'off'; return false }
      connect = p
      method = props.authenticationMethod
      phase = 'exchange'
      // the exchange first: AUTH packets right behind the CONNECT are answers to come
      exchange(false, props.authenticationData)
      return true
    },
    /** During the exchange at CONNECT: AUTH packets go to it, DISCONNECT ends it, anything else is a protocol error. */
    held (packet: Buffer): void {
      if (phase !== 'exchange') return
      const type = packet[0]! >> 4
      if (type === AUTH_TYPE) onAuthBytes(packet)
      else if (type === DISCONNECT_TYPE) close()
      // [MQTT-3.1.2-30] only AUTH or DISCONNECT until the CONNACK
      else protocolError(`a packet of type ${type} during authentication`)
    },
    /** After the CONNACK: AUTH 0x19 re-authenticates, anything else is a protocol error [MQTT-4.12.1-1]. */
    auth: onAuthBytes
  }
}
