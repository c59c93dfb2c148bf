/**
 * Two stages of aedes' `authorizeForward` (called once per message delivered to a client; hook-stages.ts orders
 * them):
 *  - `countSent`: counts the publishes sent, after every later stage has let the message through;
 *  - `dollarTopics`: keeps `$` topics where MQTT says they belong:
 *    - aedes publishes its own cluster bookkeeping as `$SYS/<broker id>/heartbeat|birth|new/clients|...`: those
 *      never reach clients (aedes itself still sees them), so `$SYS/#` shows mosquitto's `$SYS/broker/...` tree;
 *    - aedes delivers retained `$`-topics to a subscriber of `#` or `+/...` on SUBSCRIBE (its live path filters
 *      them, its retained path does not): a `$` topic is only delivered when one of the client's own filters that
 *      starts with `$` matches it [MQTT-4.7.2-1]. test/integration/10-sys.test.ts shows both.
 * The added cost for ordinary topics is one char code comparison and two additions.
 */
import { subscriptionsOf } from '../aedes/internals.js'
import type { AedesPublishPacket, Client } from 'aedes'
import type { BrokerStats } from './stats.js'
import { topicMatches } from '../mqtt/topic-match.js'
import { dollarAllowed } from '../mqtt/reserved-topics.js'
import { matchingFilter } from '../mqtt/shared-names.js'

export type ForwardHook = (client: Client, packet: AedesPublishPacket) => AedesPublishPacket | null

const DOLLAR = 36

function dollarSubscribed (client: Client, topic: string): boolean {
  const subs = subscriptionsOf(client)
  for (const name in subs) {
    // a shared subscription (`$share/g/$SYS/#`) is held under an internal name: its own filter decides
    const filter = matchingFilter(name)
    if (filter.charCodeAt(0) === DOLLAR && topicMatches(filter, topic)) return true
  }
  return false
}

/** aedes' bookkeeping topics never go out; another `$` topic only to a client with a matching `$` filter. */
export function dollarTopics (next: ForwardHook): ForwardHook {
  return function dollarTopics (client, packet) {
    const topic = packet.topic
    if (topic.charCodeAt(0) === DOLLAR) {
      if (!dollarAllowed('deliver', topic)) return null
      if (!dollarSubscribed(client, topic)) return null
    }
    return next(client, packet)
  }
}

/** Counts what the later stages let through: `$SYS/broker/publish/messages/sent` and `.../bytes/sent`. */
export function countSent (stats: BrokerStats, next: ForwardHook): ForwardHook {
  return function countSent (client, packet) {
    const out = next(client, packet)
    if (out) {
      stats.publishSent++
      stats.publishBytesSent += out.payload.length
    }
    return out
  }
}
