/** A bare MQTT client over TCP (net.Socket + mqtt-packet) for exact-byte checks and malformed input. */
import net from 'node:net'
import { once } from 'node:events'
import mqttPacket, { type Packet } from 'mqtt-packet'

/** A received packet with its fields readable in tests (the union type would need a cast per field). */
export type AnyPacket = Packet & Record<string, any>

export class RawClient {
  readonly packets: AnyPacket[] = []
  private waiters: Array<{ pred: (p: AnyPacket) => boolean, resolve: (p: AnyPacket) => void }> = []
  private readonly parser
  readonly closed: Promise<void>
  readonly received: Buffer[] = []

  /** protocolVersion 5: packets are parsed and generated as MQTT 5 (reason codes, properties). */
  private constructor (readonly socket: net.Socket, private readonly protocolVersion: 4 | 5) {
    this.parser = mqttPacket.parser({ protocolVersion })
    this.parser.on('packet', (p: AnyPacket) => {
      const i = this.waiters.findIndex(w => w.pred(p))
      if (i >= 0) { const [w] = this.waiters.splice(i, 1); w!.resolve(p) } else this.packets.push(p)
    })
    socket.on('data', (d: Buffer) => { this.received.push(d); this.parser.parse(d) })
    socket.on('error', () => {})
    this.closed = new Promise(resolve => socket.once('close', () => resolve()))
  }

  static async connect (port: number, host = '127.0.0.1', protocolVersion: 4 | 5 = 4): Promise<RawClient> {
    const socket = net.connect(port, host)
    await once(socket, 'connect')
    return new RawClient(socket, protocolVersion)
  }

  send (packet: Packet | Record<string, unknown>): void {
    this.socket.write(mqttPacket.generate(packet as Packet, { protocolVersion: this.protocolVersion }))
  }

  write (bytes: Buffer | number[]): void {
    this.socket.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
  }

  /** Next packet matching `cmd` (or any), waiting for it if needed. */
  next (cmd?: string, timeoutMs = 5000): Promise<AnyPacket> {
    const pred = (p: AnyPacket) => cmd === undefined || p.cmd === cmd
    const i = this.packets.findIndex(pred)
    if (i >= 0) return Promise.resolve(this.packets.splice(i, 1)[0]!)
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${cmd ?? 'a packet'}`)), timeoutMs)
      this.waiters.push({ pred, resolve: p => { clearTimeout(t); resolve(p) } })
    })
  }

  async connectMqtt (opts: Record<string, unknown> = {}): Promise<AnyPacket> {
    this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'raw', keepalive: 60, ...opts })
    return this.next('connack')
  }

  /** PINGREQ round trip: everything the broker sent before the PINGRESP has arrived. */
  async ping (): Promise<void> {
    this.send({ cmd: 'pingreq' })
    await this.next('pingresp')
  }

  end (): void { this.socket.destroy() }
}
