/**
 * CONNACK first [MQTT-3.2.0-1]: the first packet the server sends is the CONNACK. aedes restores a returning
 * persistent session's subscriptions before it writes the CONNACK (several store round trips with LevelDB or
 * Redis), and its `write()` accepts a client that is still connecting: messages routed in that gap went out first.
 * MQTT.js handles and acknowledges them before its `connect` event (40-cluster: 4 of 1200 queued messages
 * acknowledged unseen). Deliveries that arrive before the CONNACK is written wait here, in order, and go on when
 * aedes reports it sent.
 */
import type { ClientInternals } from '../../aedes/internals.js'

/** Whether a delivery to this client must wait for its CONNACK (`held`: earlier ones wait already, keep the order). */
export function awaitsConnack (client: ClientInternals, held: boolean): boolean {
  return held || !client.connackSent
}

const beforeConnack = new WeakMap<object, Array<(sent: boolean) => void>>()
const connackWatched = new WeakSet<object>()

/** Calls `go` once the client's CONNACK is written, in the order held, or `drop` if it closes first. */
export function holdUntilConnack (client: ClientInternals, go: () => void, drop: () => void): void {
  const broker = client.broker
  if (!connackWatched.has(broker)) {
    connackWatched.add(broker)
    broker.on('connackSent', (_packet, c) => {
      if (!beforeConnack.has(c)) return
      // aedes emits this just before it sets `connackSent`: go on once it has
      queueMicrotask(() => {
        const held = beforeConnack.get(c)
        beforeConnack.delete(c)
        if (held !== undefined) for (const f of held) f(true)
      })
    })
  }
  let held = beforeConnack.get(client)
  if (held === undefined) {
    beforeConnack.set(client, held = [])
    // refused or gone before its CONNACK: the messages are not sent (a persistent session keeps its stored copies)
    client.conn.once('close', () => {
      const left = beforeConnack.get(client)
      beforeConnack.delete(client)
      if (left !== undefined) for (const f of left) f(false)
    })
  }
  held.push(sent => { if (sent && !client.closed) go(); else drop() })
}
