/**
 * Topic aliases towards a v5 client that announced a Topic Alias Maximum in its CONNECT [MQTT-3.3.2-8]: the
 * first PUBLISH on a topic carries the topic and a new alias, later ones the alias and an empty topic, so a
 * subscriber that gets the same long topic again and again (`homeassistant/sensor/<id>/state`) is sent two bytes
 * instead of it. aedes sends no aliases; mosquitto 2.0.11 neither.
 *
 * The aliases are given where the bytes leave, on each batch the write coalescer hands the socket: there the order
 * is the order on the wire (aedes decides deliveries out of order, and the outgoing window reorders them again), and
 * the stored copy of a message keeps its topic for a later connection. Aliases go to the first topics sent, up to
 * the client's maximum; later topics go out in full. A packet that the alias would make larger than the client's
 * Maximum Packet Size keeps its topic. Aliases live as long as the connection [MQTT-3.3.2-10].
 */

import { encodeVarInt, readVarInt } from '../mqtt/var-int.js'

const PUBLISH = 3
const TOPIC_ALIAS = 0x23

const varInt = (n: number): Buffer => Buffer.from(encodeVarInt(n))

export class OutgoingTopicAliases {
  private readonly aliases = new Map<string, number>()

  /** `max`: the client's Topic Alias Maximum; `maxPacketSize`: its Maximum Packet Size, if it announced one. */
  constructor (private readonly max: number, private readonly maxPacketSize?: number) {}

  /** The batch with its PUBLISH packets aliased; other packets, and anything it cannot parse, as they are. */
  rewrite (buf: Buffer): Buffer {
    const out: Buffer[] = []
    let copied = 0
    let at = 0
    while (at < buf.length) {
      const len = readVarInt(buf, at + 1)
      if (len === undefined) break
      const end = at + 1 + len[1] + len[0]
      if (end > buf.length) break
      if (buf[at]! >> 4 === PUBLISH) {
        const aliased = this.publish(buf, at, 1 + len[1], end)
        if (aliased !== undefined) {
          if (at > copied) out.push(buf.subarray(copied, at))
          out.push(aliased)
          copied = end
        }
      }
      at = end
    }
    if (out.length === 0) return buf
    if (copied < buf.length) out.push(buf.subarray(copied))
    return Buffer.concat(out)
  }

  /** One PUBLISH from `start` (its variable header at `start + header`) to `end`, aliased, or undefined to keep it. */
  private publish (buf: Buffer, start: number, header: number, end: number): Buffer | undefined {
    const first = buf[start]!
    let at = start + header
    const topicLen = buf.readUInt16BE(at)
    const topic = buf.toString('latin1', at + 2, at + 2 + topicLen)
    at += 2 + topicLen
    const idEnd = ((first >> 1) & 3) > 0 ? at + 2 : at
    const props = readVarInt(buf, idEnd)
    if (topicLen === 0 || props === undefined) return undefined
    const propsStart = idEnd + props[1]
    let alias = this.aliases.get(topic)
    const known = alias !== undefined
    if (alias === undefined) {
      if (this.aliases.size >= this.max) return undefined
      alias = this.aliases.size + 1
    }
    const newTopicLen = known ? 0 : topicLen
    const propsLen = props[0] + 3
    const remaining = 2 + newTopicLen + (idEnd - at) + varInt(propsLen).length + propsLen + (end - propsStart - props[0])
    const lengthBytes = varInt(remaining)
    if (this.maxPacketSize !== undefined && 1 + lengthBytes.length + remaining > this.maxPacketSize) return undefined
    if (!known) this.aliases.set(topic, alias)
    const head = Buffer.alloc(1 + lengthBytes.length + 2)
    head[0] = first
    lengthBytes.copy(head, 1)
    head.writeUInt16BE(newTopicLen, 1 + lengthBytes.length)
    const aliasProp = Buffer.from([TOPIC_ALIAS, alias >> 8, alias & 0xff])
    return Buffer.concat([
      head,
      known ? Buffer.alloc(0) : buf.subarray(start + header + 2, at),
      buf.subarray(at, idEnd),
      varInt(propsLen),
      aliasProp,
      buf.subarray(propsStart, end)
    ])
  }
}
