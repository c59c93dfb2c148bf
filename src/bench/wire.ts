/**
 * Just enough MQTT 3.1.1 and 5 encoding and a streaming scanner for the load generator. Hand-written rather than
 * mqtt-packet or MQTT.js so that a generator process costs a few integer operations per message and the broker,
 * not the generator, is the bottleneck.
 */
import { encodeVarInt, readVarInt } from '../mqtt/var-int.js'

export const PUBLISH = 3
export const PUBACK = 4
export const PUBREC = 5
export const PUBREL = 6
export const PUBCOMP = 7
export const SUBACK = 9
export const CONNACK = 2
export const PINGRESP = 13

function str (s: string): Buffer {
  const b = Buffer.from(s, 'utf8')
  const len = Buffer.alloc(2)
  len.writeUInt16BE(b.length)
  return Buffer.concat([len, b])
}

function packet (type: number, flags: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(type << 4) | flags, ...encodeVarInt(body.length)]), body])
}

export type Version = 4 | 5
/** MQTT 5 packets carry a property length after their variable header: none here, so one 0 byte. */
const NO_PROPERTIES = Buffer.from([0])
const props = (v: Version): Buffer => v === 5 ? NO_PROPERTIES : Buffer.alloc(0)
/** MQTT 5: Session Expiry Interval 0xFFFFFFFF, so that clean 0 means what it means in 3.1.1 */
const NEVER_EXPIRES = Buffer.from([5, 0x11, 0xff, 0xff, 0xff, 0xff])

export function connect (clientId: string, opts: { clean?: boolean, keepalive?: number, version?: Version } = {}): Buffer {
  const v = opts.version ?? 4
  const clean = opts.clean ?? true
  const ka = Buffer.alloc(2)
  ka.writeUInt16BE(opts.keepalive ?? 0)
  const p = v === 5 ? (clean ? NO_PROPERTIES : NEVER_EXPIRES) : Buffer.alloc(0)
  return packet(1, 0, Buffer.concat([str('MQTT'), Buffer.from([v, clean ? 0x02 : 0]), ka, p, str(clientId)]))
}

export function subscribe (messageId: number, filters: Array<{ topic: string, qos: number }>, version: Version = 4): Buffer {
  const id = Buffer.alloc(2)
  id.writeUInt16BE(messageId)
  return packet(8, 2, Buffer.concat([id, props(version), ...filters.map(f => Buffer.concat([str(f.topic), Buffer.from([f.qos])]))]))
}

export function pingreq (): Buffer {
  return Buffer.from([0xc0, 0])
}

export function disconnect (): Buffer {
  return Buffer.from([0xe0, 0])
}

export function ack (type: number, messageId: number): Buffer {
  return Buffer.from([(type << 4) | (type === PUBREL ? 2 : 0), 2, messageId >> 8, messageId & 0xff])
}

/** A PUBLISH with a message id slot at `idOffset` (when qos > 0) and the payload at `payloadOffset`. */
export interface PublishTemplate {
  buf: Buffer
  idOffset: number
  payloadOffset: number
}

export function publishTemplate (topic: string, payload: Buffer, qos: number, retain = false, version: Version = 4): PublishTemplate {
  const t = str(topic)
  const id = qos > 0 ? Buffer.alloc(2) : Buffer.alloc(0)
  const p = props(version)
  const body = Buffer.concat([t, id, p, payload])
  const header = Buffer.from([(PUBLISH << 4) | (qos << 1) | (retain ? 1 : 0), ...encodeVarInt(body.length)])
  const buf = Buffer.concat([header, body])
  return { buf, idOffset: header.length + t.length, payloadOffset: header.length + t.length + id.length + p.length }
}

export type PacketHandler = (type: number, flags: number, buf: Buffer, bodyStart: number, bodyEnd: number) => void

/**
 * Splits a byte stream into packets and calls `onPacket` with the fixed header's type and flags and the body's
 * bounds inside `buf` (valid only during the call). Keeps at most one partial packet between chunks.
 */
export class Scanner {
  private rest: Buffer | undefined

  constructor (private readonly onPacket: PacketHandler) {}

  push (chunk: Buffer): void {
    let buf = chunk
    if (this.rest !== undefined) {
      buf = Buffer.concat([this.rest, chunk])
      this.rest = undefined
    }
    const n = buf.length
    let i = 0
    while (i < n) {
      if (i + 2 > n) break
      const first = buf[i]!
      const header = readVarInt(buf, i + 1)
      if (header === undefined) break
      const [len, lenBytes] = header
      const j = i + 1 + lenBytes
      if (j + len > n) break
      this.onPacket(first >> 4, first & 0x0f, buf, j, j + len)
      i = j + len
    }
    if (i < n) this.rest = buf.subarray(i)
  }
}
