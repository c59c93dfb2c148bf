/**
 * Rules on what a client sends, applied to each parsed packet before aedes handles it (one listener per
 * connection, ahead of aedes' own on the client's parser):
 *
 * - The inbound QoS 2 window. A QoS 2 PUBLISH is stored until its PUBREL; a client that keeps sending new packet
 *   identifiers and never releases them grows the store without bound. A v5 client was told Receive Maximum
 *   (`max_inflight_messages`) in its CONNACK: one more gets DISCONNECT 0x93 [MQTT-3.3.4-9]. 3.1/3.1.1 have no way
 *   to announce a window, so the bound there is INBOUND_QOS2_LIMIT_V3, well above what a pipelining publisher
 *   reaches, and the connection closes (aedes 1.2.0 had this bound; 2.0.0-beta.1 lost it).
 * - Topic aliases over the listener's `max_topic_alias`: aedes has one limit for the whole broker (Midge gives it
 *   the highest listener's), so an alias over a lower listener's limit is made invalid here and aedes answers it
 *   with DISCONNECT 0x94, as the CONNACK told the client [MQTT-3.3.2-9].
 * - The topic filter `__proto__`: aedes 2.0.0-beta.1 de-duplicates a SUBSCRIBE's filters in a plain object, where
 *   this one replaces the prototype and breaks the whole packet. It is renamed to a filter the hooks refuse, so
 *   it alone gets a failure code in the SUBACK.
 *
 * Tests: 03-aedes-seam.
 */
import type { Client } from 'aedes'
import { clientInternals } from '../aedes/internals.js'
import { REFUSED_FILTER } from '../mqtt/reserved-topics.js'

export const INBOUND_QOS2_LIMIT_V3 = 1000
const RECEIVE_MAXIMUM_EXCEEDED = 0x93
/** What MQTT 5 assumes when the server sends no Receive Maximum. */
const RECEIVE_MAXIMUM_DEFAULT = 65_535

interface InboundPacket { cmd: string, qos?: number, messageId?: number, subscriptions?: Array<{ topic: string }>, properties?: { topicAlias?: number } }

export function installInboundRules (client: Client, receiveMaximum: number, maxTopicAlias: number, onViolation: (why: string) => void): void {
  const c = clientInternals(client)
  let awaitingRelease: Set<number> | undefined
  c._parser.prependListener('packet', (p: InboundPacket) => {
    if (p.cmd === 'publish') {
      const alias = p.properties?.topicAlias
      if (alias !== undefined && alias > maxTopicAlias && p.properties !== undefined) {
        onViolation(`topic alias ${alias} over max_topic_alias ${maxTopicAlias}`)
        // 0 is never a valid alias: aedes refuses the PUBLISH itself (DISCONNECT 0x94) and routes nothing
        p.properties.topicAlias = 0
        return
      }
      if (p.qos !== 2 || p.messageId === undefined) return
      const ids = (awaitingRelease ??= new Set())
      if (ids.has(p.messageId)) return
      const v5 = c.version === 5
      const limit = v5 ? (receiveMaximum > 0 ? receiveMaximum : RECEIVE_MAXIMUM_DEFAULT) : INBOUND_QOS2_LIMIT_V3
      if (ids.size >= limit) {
        onViolation(`more than ${limit} QoS 2 messages awaiting PUBREL`)
        if (v5) client.disconnect({ reasonCode: RECEIVE_MAXIMUM_EXCEEDED })
        else c.conn.destroy()
        return
      }
      ids.add(p.messageId)
    } else if (p.cmd === 'pubrel') {
      if (p.messageId !== undefined) awaitingRelease?.delete(p.messageId)
    } else if (p.cmd === 'subscribe' && p.subscriptions !== undefined) {
      for (const s of p.subscriptions) if (s.topic === '__proto__') s.topic = REFUSED_FILTER
    }
  })
}
