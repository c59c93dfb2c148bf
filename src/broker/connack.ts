/**
 * The MQTT 5 CONNACK tells the client the server's limits, and must tell the truth about this listener's config.
 * aedes builds its CONNACK properties from broker-wide options only (and has none for Maximum QoS, Retain
 * Available or a per-listener Topic Alias Maximum), so Midge amends the CONNACK on its way out: the first packet
 * a v5 connection is sent, rewritten once in the write coalescer (write-coalescer.ts `rewriteFirst`), at no cost
 * to any later packet. mosquitto 2.0.11 sends the same set (checked with MQTT.js against Debian's mosquitto).
 *
 * The same step gives a refused v5 CONNECT the specific reason code the hooks chose (0x9B QoS not supported for a
 * will above `max_qos`), where aedes would map the 3.1.1 return code to the generic one.
 */
import mqttPacket, { type IConnackPacket } from 'mqtt-packet'
import { packetLength } from '../mqtt/var-int.js'

const CONNACK = 0x20

/** What the CONNACK of one v5 client should say beyond what aedes writes. */
export interface ConnackAmendment {
  /** Reason code to send instead of aedes' (a refusal only). */
  reasonCode?: number
  maximumQoS?: 0 | 1
  retainAvailable?: false
  /** 0 removes the property (no aliases). */
  topicAliasMaximum?: number
  serverKeepAlive?: number
  /** Enhanced authentication: the method the client was authenticated with, and the last data. */
  authenticationMethod?: string
  authenticationData?: Buffer
  /** aedes says 0; Midge routes `$share/` itself outside cluster mode (shared-subscriptions.ts). */
  sharedSubscriptionAvailable?: boolean
}

/** `buf` with its leading v5 CONNACK amended; any other first packet is returned as it is. */
export function amendConnack (buf: Buffer, amend: ConnackAmendment): Buffer {
  if (buf.length < 4 || (buf[0]! & 0xf0) !== CONNACK) return buf
  const n = packetLength(buf)
  if (n === undefined || n > buf.length) return buf
  let connack: IConnackPacket | undefined
  const parser = mqttPacket.parser({ protocolVersion: 5 })
  parser.on('packet', p => { connack = p as IConnackPacket })
  // aedes wrote these bytes, so they parse; were they not to, the CONNACK goes out as aedes wrote it
  parser.on('error', () => {})
  parser.parse(buf.subarray(0, n))
  if (connack === undefined) return buf
  const code = connack.reasonCode ?? 0
  if (code !== 0) {
    if (amend.reasonCode === undefined || amend.reasonCode === code) return buf
    connack.reasonCode = amend.reasonCode
  } else {
    const props: NonNullable<IConnackPacket['properties']> = { ...connack.properties }
    if (amend.maximumQoS !== undefined) props.maximumQoS = amend.maximumQoS
    if (amend.retainAvailable === false) props.retainAvailable = false
    if (amend.topicAliasMaximum !== undefined) {
      if (amend.topicAliasMaximum > 0) props.topicAliasMaximum = amend.topicAliasMaximum
      else delete props.topicAliasMaximum
    }
    if (amend.serverKeepAlive !== undefined) props.serverKeepAlive = amend.serverKeepAlive
    if (amend.authenticationMethod !== undefined) props.authenticationMethod = amend.authenticationMethod
    if (amend.authenticationData !== undefined) props.authenticationData = amend.authenticationData
    if (amend.sharedSubscriptionAvailable === true) delete props.sharedSubscriptionAvailable
    connack.properties = props
  }
  const out = mqttPacket.generate(connack, { protocolVersion: 5 })
  return n === buf.length ? out : Buffer.concat([out, buf.subarray(n)])
}
