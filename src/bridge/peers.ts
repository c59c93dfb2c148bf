/**
 * Midge as the remote of other brokers' bridges. A client whose CONNECT carries mosquitto's private-bridge flag
 * (protocol level 0x83/0x84) is a bridge: like mosquitto, Midge sends it nothing it published itself (its own
 * messages would come straight back over the bridge). What it publishes is relayed by Midge's own bridges, except
 * back to its own broker (bridge.ts, fromRemotesBridge).
 */
import type { AedesPublishPacket, Client, ConnectPacket } from 'aedes'

type PreConnect = (client: Client, packet: ConnectPacket, cb: (err: Error | null, ok: boolean) => void) => void
type Forward = (client: Client, packet: AedesPublishPacket) => AedesPublishPacket | null

export class BridgePeers {
  private readonly clients = new WeakSet<Client>()

  preConnect (inner: PreConnect): PreConnect {
    return (client, packet, cb) => {
      if ((packet as ConnectPacket & { bridgeMode?: boolean }).bridgeMode === true) this.clients.add(client)
      inner(client, packet, cb)
    }
  }

  /** [MQTT-3.8.3-3] No Local, for bridges that cannot ask for it (3.1/3.1.1). */
  forward (inner: Forward): Forward {
    return (client, packet) => {
      if (this.clients.has(client) && (packet as AedesPublishPacket & { clientId?: string }).clientId === client.id) return null
      return inner(client, packet)
    }
  }
}
