/**
 * What Midge does with each packet a client sends, before aedes handles it, as one listener on the client's parser
 * (aedes/internals.ts `applyPacketRules`), one function per listener for all its connections. Broker builds the
 * list in this order:
 *
 *   1. delivery built first   the delivery functions, before a SUBSCRIBE or a restored session keeps them
 *                             (aedes/internals.ts `buildBeforeSubscribing`)
 *   2. mount point            the listener's prefix on every topic coming in (listeners/mount-point.ts)
 *   3. shared names           `$share/GROUP/FILTER` renamed for aedes, acknowledgements noted (shared-subscriptions.ts)
 *   4. inbound rules          the QoS 2 window, topic aliases, `__proto__` (inbound.ts)
 *
 * Each rule sees the packet as the one before left it. A rule that closes the connection does not stop the rest,
 * as separate listeners did not.
 */
import type { PacketRule } from '../aedes/internals.js'

export function composePacketRules (rules: readonly PacketRule[]): PacketRule {
  const list = [...rules]
  return function packetRules (this: object, p): void {
    for (let i = 0; i < list.length; i++) list[i]!.call(this, p)
  }
}
