/**
 * mosquitto's topic remapping (mosquitto.conf(5), `topic`): out topics are subscribed locally as
 * local-prefix + pattern and sent with the local prefix replaced by the remote one; in topics are subscribed on the
 * remote as remote-prefix + pattern and published locally with the remote prefix replaced by the local one.
 */
import { topicMatches } from '../mqtt/topic-match.js'
import type { BridgeTopic } from '../config/bridge.js'

export function localFilter (t: BridgeTopic): string {
  return t.localPrefix + t.pattern
}

export function remoteFilter (t: BridgeTopic): string {
  return t.remotePrefix + t.pattern
}

export function isOut (t: BridgeTopic): boolean {
  return t.direction === 'out' || t.direction === 'both'
}

export function isIn (t: BridgeTopic): boolean {
  return t.direction === 'in' || t.direction === 'both'
}

/** [MQTT-4.7.2-1] a filter starting with a wildcard does not match topics starting with '$'. */
function matches (filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false
  return topicMatches(filter, topic)
}

/** The first out rule (in config order) that matches a local topic, and the topic on the remote. */
export function toRemote (topics: readonly BridgeTopic[], localTopic: string): { rule: BridgeTopic, topic: string } | undefined {
  for (const t of topics) {
    if (!isOut(t) || !matches(localFilter(t), localTopic)) continue
    return { rule: t, topic: t.remotePrefix + localTopic.slice(t.localPrefix.length) }
  }
  return undefined
}

/** The first in rule that matches a remote topic, and the topic here. */
export function toLocal (topics: readonly BridgeTopic[], remoteTopic: string): { rule: BridgeTopic, topic: string } | undefined {
  for (const t of topics) {
    if (!isIn(t) || !matches(remoteFilter(t), remoteTopic)) continue
    return { rule: t, topic: t.localPrefix + remoteTopic.slice(t.remotePrefix.length) }
  }
  return undefined
}
