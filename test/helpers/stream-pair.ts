/**
 * aedes over in-memory stream pairs, as aedes' own tests do (test/helper.js `setup()`: a duplex pair, one side
 * handed to `broker.handle`): no sockets, no ports. Each client writes raw packets with mqtt-packet and reads what
 * the broker wrote; `pause()` stops its reads, so the broker's writes to it wait as they would for a socket that
 * is not read (the pair's write callback runs only when the other side reads).
 */
import { duplexPair, type Duplex } from 'node:stream'
import { once } from 'node:events'
import { Aedes, type Client } from 'aedes'
import memoryPersistence from 'aedes-persistence'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { installDelivery, deliveryPacketRule, admitStored, type DeliveryOptions } from '../../src/broker/delivery.js'
import { MidgeStore, type StoreBackend } from '../../src/persistence/store.js'
import { readOneBatchAtATime } from '../../src/broker/read-loop.js'
import { applyPacketRules } from '../../src/aedes/internals.js'
import { newStats } from '../../src/persistence/limits.js'
import { silentLogger } from '../../src/logging/logger.js'
import type { AnyPacket } from './raw-client.js'

export class PairClient {
  /** Packets received and not taken by `next` yet, in arrival order. */
  readonly packets: AnyPacket[] = []
  /** Every packet received, in arrival order (taken or not). */
  readonly log: AnyPacket[] = []
  /** The bytes received, as read. */
  readonly received: Buffer[] = []
  private waiters: Array<{ pred: (p: AnyPacket) => boolean, resolve: (p: AnyPacket) => void }> = []
  private readonly parser
  private readonly onData = (d: Buffer): void => { this.received.push(d); this.parser.parse(d) }

  constructor (readonly conn: Duplex, readonly client: Client, private readonly protocolVersion: 4 | 5) {
    this.parser = mqttPacket.parser({ protocolVersion })
    this.parser.on('packet', (p: AnyPacket) => {
      this.log.push(p)
      const i = this.waiters.findIndex(w => w.pred(p))
      if (i >= 0) { const [w] = this.waiters.splice(i, 1); w!.resolve(p) } else this.packets.push(p)
    })
    conn.on('data', this.onData)
  }

  send (packet: Packet | Record<string, unknown>): void {
    this.conn.write(mqttPacket.generate(packet as Packet, { protocolVersion: this.protocolVersion }))
  }

  /** Next packet matching `cmd` (or any), waiting for it if needed. */
  next (cmd?: string, timeoutMs = 5000): Promise<AnyPacket> {
    const pred = (p: AnyPacket): boolean => cmd === undefined || p.cmd === cmd
    const i = this.packets.findIndex(pred)
    if (i >= 0) return Promise.resolve(this.packets.splice(i, 1)[0]!)
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${cmd ?? 'a packet'}`)), timeoutMs)
      this.waiters.push({ pred, resolve: p => { clearTimeout(t); resolve(p) } })
    })
  }

  async connect (opts: Record<string, unknown> = {}): Promise<AnyPacket> {
    this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: this.protocolVersion, clean: true, clientId: 'pair', keepalive: 0, ...opts })
    return this.next('connack')
  }

  async subscribe (topic: string, qos: 0 | 1 | 2, messageId = 1): Promise<number[]> {
    this.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] })
    return (await this.next('suback')).granted as number[]
  }

  /** PINGREQ round trip: everything the broker wrote before the PINGRESP has been read. */
  async ping (): Promise<void> {
    this.send({ cmd: 'pingreq' })
    await this.next('pingresp')
  }

  /**
   * The next `n` PUBLISH packets, and any sent by then: aedes writes a message one event-loop turn after it is
   * handed on (setImmediate), so after the last expected one has arrived, one more turn and a PINGREQ round trip
   * show whether anything else was sent.
   */
  async publishes (n: number): Promise<AnyPacket[]> {
    const got: AnyPacket[] = []
    for (let i = 0; i < n; i++) got.push(await this.next('publish'))
    await new Promise(resolve => setImmediate(resolve))
    await this.ping()
    got.push(...this.takePublishes())
    return got
  }

  /** The PUBLISH packets received and not taken yet, taken. */
  takePublishes (): AnyPacket[] {
    const got = this.packets.filter(p => p.cmd === 'publish')
    this.packets.splice(0, this.packets.length, ...this.packets.filter(p => p.cmd !== 'publish'))
    return got
  }

  /** Stop reading: the broker's writes to this client wait, as for a socket nobody reads. */
  pause (): void {
    this.conn.off('data', this.onData)
    this.conn.pause()
  }

  resume (): void {
    this.conn.on('data', this.onData)
    this.conn.resume()
  }

  async end (): Promise<void> {
    if (this.conn.destroyed) return
    const closed = once(this.conn, 'close')
    this.conn.destroy()
    await closed
  }
}

/**
 * aedes starts each client's packet identifiers at a random one (1 after 65535): numbers them from the first seen,
 * 0, 1, 2 ..., and remembers each message's own (by payload) for its acknowledgement.
 */
export class IdSequence {
  private first: number | undefined
  private readonly ids = new Map<string, number>()

  /** [payload, packet id in sequence, qos] of each packet. */
  read (packets: AnyPacket[]): Array<[string, number | undefined, number]> {
    return packets.map(p => [p.payload.toString(), this.seq(p.payload.toString(), p.messageId), p.qos])
  }

  private seq (payload: string, id: number | undefined): number | undefined {
    if (id === undefined) return undefined
    this.ids.set(payload, id)
    this.first ??= id
    return (id - this.first + 65535) % 65535
  }

  /** The packet id the message with this payload was sent with. */
  of (payload: string): number { return this.ids.get(payload)! }
}

export interface PairBroker {
  aedes: Aedes
  opts: DeliveryOptions
  /** A new client over a fresh stream pair (not connected yet). */
  pair (protocolVersion?: 4 | 5): PairClient
  close (): Promise<void>
}

/**
 * Watches the messages matching `filter` that reach the subscriptions registered before this call: its listener
 * is registered after them on the same filter, and aedes' emitter calls a filter's listeners in that order,
 * synchronously. Once `done` resolves, `count` messages have passed the delivery layer (sent, or waiting).
 */
export async function watchDeliveries (aedes: Aedes, filter: string, count: number): Promise<{ done: Promise<void> }> {
  let seen = 0
  let resolveAll!: () => void
  const all = new Promise<void>(resolve => { resolveAll = resolve })
  const listener = (_packet: unknown, cb: () => void): void => {
    cb()
    if (++seen === count) resolveAll()
  }
  await new Promise<void>(resolve => aedes.subscribe(filter, listener, resolve))
  return { done: all.then(() => new Promise<void>(resolve => aedes.unsubscribe(filter, listener, resolve))) }
}

/**
 * aedes with Midge's delivery installed on every client, its reads one batch at a time and its stored queues
 * through MidgeStore's DUP marking and `admitStored`, as the broker does; the delivery options default to those Midge derives from its default config
 * (max_inflight_messages 20, max_queued_messages 1000, max_queued_bytes 0, stuck after 1 s).
 */
export async function startPairBroker (opts: Partial<DeliveryOptions> = {}, store: (persistence: object) => object = p => p): Promise<PairBroker> {
  const deliveryOptions: DeliveryOptions = { maxPending: 1020, maxInflight: 20, maxWaiting: 1000, maxPendingBytes: 0, stuckAfterMs: 1000, stats: newStats(), log: silentLogger(), ...opts }
  const backend = store(memoryPersistence() as object) as StoreBackend
  const aedes = await Aedes.createBroker({ persistence: new MidgeStore({ backend, accounting: undefined, inCallOrder: false, admitStored, log: silentLogger() }) as never })
  const pairs: PairClient[] = []
  return {
    aedes,
    opts: deliveryOptions,
    pair (protocolVersion = 4) {
      const [clientSide, serverSide] = duplexPair()
      // either side gone ends the other, as a socket's close does
      clientSide.once('close', () => serverSide.destroy())
      serverSide.once('close', () => clientSide.destroy())
      const client = aedes.handle(serverSide as never)
      // as the broker does: a publisher is read again once its last batch is delivered (backpressure)
      readOneBatchAtATime(client)
      installDelivery(client, deliveryOptions)
      applyPacketRules(client, deliveryPacketRule)
      const p = new PairClient(clientSide, client, protocolVersion)
      pairs.push(p)
      return p
    },
    async close () {
      await Promise.all(pairs.map(p => p.end()))
      await new Promise<void>(resolve => aedes.close(() => resolve()))
    }
  }
}
