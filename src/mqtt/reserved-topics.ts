/**
 * The `$` topics that are not the clients' to use, in one place: what a client may publish to (or name as its will),
 * what it may subscribe to, and which of aedes' own topics are never delivered. Midge's internal names live under
 * `$MIDGE`: nobody can publish or subscribe there, so a name under it never routes a message. `$SYS/` is the
 * broker's own tree (mosquitto's `$SYS/broker/...`, published by sys/sys-publisher.ts).
 *
 * Delivery of `$` topics to subscribers follows [MQTT-4.7.2-1] (a filter starting with a wildcard does not match
 * them): mqtt/topic-match.ts and sys/forward.ts.
 */

/** Midge's own names: never published to or subscribed by a client. */
export const MIDGE_PREFIX = '$MIDGE'
/** The broker's statistics tree: clients may read it, only the broker publishes it. */
export const SYS_PREFIX = '$SYS/'
/** Where publishes the broker acknowledges but must not route (an ACL deny for 3.1.1, `$SYS`) are sent. */
export const DROP_TOPIC = '$MIDGE/dropped'
/** A filter every SUBSCRIBE is refused (what aedes cannot hold, an invalid shared subscription). */
export const REFUSED_FILTER = '$MIDGE/refused'
/** The retained probe /healthz writes and deletes. */
export const HEALTH_TOPIC = '$MIDGE/healthz'
/** The name aedes holds a shared subscription under (`$MIDGE/share/GROUP/FILTER`, broker/shared-subscriptions.ts). */
export const SHARED_PREFIX = '$MIDGE/share/'

/** aedes publishes its cluster bookkeeping as `$SYS/<broker id>/...` (aedes.js, handlers/subscribe.js, unsubscribe.js). */
const AEDES_BOOKKEEPING = /^\$SYS\/[^/]+\/(?:heartbeat|birth|new\/clients|disconnect\/clients|new\/subscribes|new\/unsubscribes)$/
const BROKER_TREE = '$SYS/broker/'

/** A topic no client may publish to, nor name as its will: the broker's `$SYS/` tree and Midge's `$MIDGE` names. */
export function reservedForPublish (topic: string): boolean {
  return topic.startsWith(SYS_PREFIX) || topic.startsWith(MIDGE_PREFIX)
}

/** A filter no client may subscribe to: Midge's `$MIDGE` names (its internal ones, and where dropped messages go). */
export function reservedForSubscribe (filter: string): boolean {
  return filter.startsWith(MIDGE_PREFIX)
}

/** One of aedes' own bookkeeping topics: aedes sees them, clients never do (`$SYS/#` shows mosquitto's tree only). */
export function isAedesBookkeeping (topic: string): boolean {
  return !topic.startsWith(BROKER_TREE) && AEDES_BOOKKEEPING.test(topic)
}

/** What a client does with a topic or filter, as the `$`-topic policy sees it. */
export type DollarUse = 'publish' | 'will' | 'subscribe' | 'deliver'

const DOLLAR = 36

/**
 * The `$`-topic policy, one function for every use (mosquitto's acl__check_dollar): whether a client may publish
 * to `topic`, name it as its will, subscribe to it as a filter, or have it delivered. A topic that does not start
 * with `$` always may. The delivery rule of [MQTT-4.7.2-1] (a filter starting with a wildcard does not match a `$`
 * topic) depends on the client's filters, not on the topic alone: sys/forward.ts applies it after this.
 */
export function dollarAllowed (use: DollarUse, topic: string): boolean {
  if (topic.charCodeAt(0) !== DOLLAR) return true
  switch (use) {
    case 'publish':
    case 'will':
      return !reservedForPublish(topic)
    case 'subscribe':
      return !reservedForSubscribe(topic)
    case 'deliver':
      return !isAedesBookkeeping(topic)
  }
}
