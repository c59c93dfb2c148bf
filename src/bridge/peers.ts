/**
 * Midge as the remote of other brokers' bridges. A client whose CONNECT carries mosquitto's private-bridge flag
 * (protocol level 0x83/0x84) is a bridge: like mosquitto, Midge sends it nothing it published itself (its own
 * messages would come straight back over the bridge), and Midge's own bridges do not forward what it published, so
 * two brokers bridged to each other on the same topics do not pass a message back and forth. A downstream bridge
 * whose messages should be relayed further connects with `try_private false`.
 */
import type { Aedes, AedesPublishPacket, Client, ConnectPacket } from 'aedes'

type PreConnect = (client: Client, packet: ConnectPacket, cb: (err: Error | null, ok: boolean) => void) => void
type Forward = (client: Client, packet: AedesPublishPacket) => AedesPublishPacket | null

export class BridgePeers {
  /** Client id -> the connected client that declared itself a bridge. */
  private readonly byId = new Map<string, Client>()
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

  attach (aedes: Aedes): void {
    aedes.on('client', (c: Client) => { if (this.clients.has(c)) this.byId.set(c.id, c) })
    aedes.on('clientDisconnect', (c: Client) => { if (this.byId.get(c.id) === c) this.byId.delete(c.id) })
  }

  /** True for a message a connected peer bridge published here. */
  fromPeer (packet: { clientId?: string }): boolean {
    return packet.clientId !== undefined && this.byId.has(packet.clientId)
  }
}
