/**
 * A QoS 1/2 message the store refused for this client (its queue full, see persistence/limits.ts) is not
 * delivered: aedes would fail to find it in the store and close the connection.
 */
import type { ClientInternals, DeliverPacket } from '../../aedes/internals.js'
import type { QueueAccounting } from '../../persistence/limits.js'

export function refusedByStore (client: ClientInternals, accounting: QueueAccounting | undefined, packet: DeliverPacket): boolean {
  return !client.clean && client.id !== null && accounting !== undefined &&
    accounting.wasRefused(client.id, { brokerId: packet.brokerId ?? undefined, brokerCounter: packet.brokerCounter })
}
