/**
 * Rules on what a client sends, applied to each parsed packet before aedes handles it (the last of the
 * connection's packet rules, packet-rules.ts):
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
import { clientOfParser, type ClientInternals } from '../aedes/internals.js'
import { REFUSED_FILTER } from '../mqtt/reserved-topics.js'

export const INBOUND_QOS2_LIMIT_V3 = 1000
const RECEIVE_MAXIMUM_EXCEEDED = 0x93
/** What MQTT 5 assumes when the server sends no Receive Maximum. */
const RECEIVE_MAXIMUM_DEFAULT = 65_535

interface InboundPacket { cmd: string, qos?: number, messageId?: number, subscriptions?: Array<{ topic: string }>, properties?: { topicAlias?: number } }

/** A client's QoS 2 packet identifiers awaiting PUBREL: made by its first QoS 2 PUBLISH (most clients send none). */
const awaitingRelease = new WeakMap<object, Set<number>>()

/** The rules as one packet rule, called with the client's parser as `this`. */
export type InboundRules = (this: object, p: InboundPacket) => void

/**
 * Builds the rules for one listener: one function for all its connections (an idle connection holds no closure of
 * its own). `onViolation` is told which client broke them.
 */
export function inboundRules (receiveMaximum: number, maxTopicAlias: number, onViolation: (client: ClientInternals, why: string) => void): InboundRules {
  return function inboundRule (this: object, p: InboundPacket): void {
    if (p.cmd === 'publish') {
      const alias = p.properties?.topicAlias
      if (alias !== undefined && alias > maxTopicAlias && p.properties !== undefined) {
        onViolation(clientOfParser(this), `topic alias ${alias} over max_topic_alias ${maxTopicAlias}`)
        // 0 is never a valid alias: aedes refuses the PUBLISH itself (DISCONNECT 0x94) and routes nothing
        p.properties.topicAlias = 0
        return
      }
      if (p.qos !== 2 || p.messageId === undefined) return
      const c = clientOfParser(this)
      let ids = awaitingRelease.get(c)
      if (ids === undefined) awaitingRelease.set(c, ids = new Set())
      if (ids.has(p.messageId)) return
      const v5 = c.version === 5
      const limit = v5 ? (receiveMaximum > 0 ? receiveMaximum : RECEIVE_MAXIMUM_DEFAULT) : INBOUND_QOS2_LIMIT_V3
      if (ids.size >= limit) {
        onViolation(c, `more than ${limit} QoS 2 messages awaiting PUBREL`)
        if (v5) c.disconnect({ reasonCode: RECEIVE_MAXIMUM_EXCEEDED })
        else c.conn.destroy()
        return
      }
      ids.add(p.messageId)
    } else if (p.cmd === 'pubrel') {
      if (p.messageId !== undefined) awaitingRelease.get(clientOfParser(this))?.delete(p.messageId)
    } else if (p.cmd === 'subscribe' && p.subscriptions !== undefined) {
      for (const s of p.subscriptions) if (s.topic === '__proto__') s.topic = REFUSED_FILTER
    }
  }
}
