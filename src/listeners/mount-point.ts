/**
 * `mount_point` on a listener: every topic of its clients gets the prefix on the way in (PUBLISH, SUBSCRIBE,
 * UNSUBSCRIBE, the will of CONNECT), so they only ever see the tree below it, and loses it on the way out. As in
 * mosquitto, ACL checks and the store see the full topic.
 *
 * Incoming packets are rewritten as the connection's parser emits them, before aedes handles them. Outgoing
 * PUBLISH packets are rewritten only while mqtt-packet serialises them: aedes hands the same packet objects to the
 * store (a persistent session's queue, the in-flight copy it resends), which must keep the full topic, so the
 * prefix is taken off for the bytes alone and put back at once.
 */
import mqttPacket from 'mqtt-packet'

interface ParsedPacket { cmd: string, topic?: string, subscriptions?: Array<{ topic: string }>, unsubscriptions?: string[], will?: { topic: string } }

const mountPoints = new WeakMap<object, string>()
let patched = false

/** Wraps mqtt-packet's writeToStream once: PUBLISH to a mounted connection goes out without the prefix. */
function patchWriter (): void {
  if (patched) return
  patched = true
  const original = mqttPacket.writeToStream
  const wrapped = function writeToMountedStream (packet: Parameters<typeof original>[0], stream: Parameters<typeof original>[1], opts?: Parameters<typeof original>[2]): boolean {
    const mp = mountPoints.get(stream)
    const p = packet as { cmd: string, topic?: string }
    if (mp === undefined || p.cmd !== 'publish' || p.topic === undefined || !p.topic.startsWith(mp)) return original(packet, stream, opts)
    const full = p.topic
    p.topic = full.slice(mp.length)
    try {
      return original(packet, stream, opts)
    } finally {
      p.topic = full
    }
  }
  // mqtt-packet's cacheNumbers setting stays reachable through the function aedes calls
  Object.defineProperty(wrapped, 'cacheNumbers', { get: () => original.cacheNumbers, set: (v: boolean) => { original.cacheNumbers = v } })
  mqttPacket.writeToStream = wrapped as typeof original
}

/** Mounts one connection's outgoing PUBLISH packets (the stream given to aedes.handle) below `mountPoint`. */
export function mountStream (stream: object, mountPoint: string): void {
  patchWriter()
  mountPoints.set(stream, mountPoint)
}

const rules = new Map<string, (p: ParsedPacket) => void>()

/** The packet rule that puts `mountPoint` in front of every topic a client sends: one function per mount point. */
export function mountPointRule (mountPoint: string): (p: ParsedPacket) => void {
  let rule = rules.get(mountPoint)
  if (rule === undefined) {
    rules.set(mountPoint, rule = function mountPointRule (p: ParsedPacket): void {
      if (p.cmd === 'publish' && p.topic !== undefined) p.topic = mountPoint + p.topic
      else if (p.cmd === 'subscribe') for (const s of p.subscriptions ?? []) s.topic = mountPoint + s.topic
      else if (p.cmd === 'unsubscribe' && p.unsubscriptions) p.unsubscriptions = p.unsubscriptions.map(t => mountPoint + t)
      else if (p.cmd === 'connect' && p.will) p.will.topic = mountPoint + p.will.topic
    })
  }
  return rule
}
