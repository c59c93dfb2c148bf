/**
 * One bridge: an MQTT.js client to the remote broker, fed by a subscription on the local aedes.
 *
 * Out: every local message matching an out topic reaches `onLocal` through aedes' router. QoS 1/2 go into the
 * bridge's queue (queue.ts) before aedes hears back, so the message is in the store before the publish completes;
 * they leave the queue only when the remote acknowledged them, and are sent in order with at most
 * `max_inflight_messages` unacknowledged. QoS 0 is sent only while connected (counted as dropped otherwise).
 * In: messages from the remote are checked against the ACL as the bridge's local identity and published through
 * aedes.publish (retained store, stored sessions, routing), and only then acknowledged to the remote.
 *
 * No loops: a payload this bridge published locally is remembered (by Buffer identity) and never goes back out
 * over it; towards the remote, try_private sets mosquitto's private-bridge flag (3.1/3.1.1) and v5 subscriptions ask
 * for No Local, so that the remote does not send our own messages back.
 */
import net from 'node:net'
import { createHash } from 'node:crypto'
import tls from 'node:tls'
import type { Duplex } from 'node:stream'
import { MqttClient, connect as mqttConnect, type IClientOptions, type IPublishPacket, type IConnackPacket, type IDisconnectPacket, type Packet } from 'mqtt'
import type { Aedes, AedesPublishPacket } from 'aedes'
import type { Logger } from '../logging/logger.js'
import type { AuthChain } from '../auth/chain.js'
import type { ListenerConfig } from '../config/schema.js'
import type { BridgeAddress, BridgeConfig } from '../config/bridge.js'
import type { BridgeQueue, BridgeProperties, QueuedMessage } from './queue.js'
import { isIn, isOut, localFilter, remoteFilter, toLocal, toRemote } from './topics.js'

/** TLS material read at start-up (a missing file stops start-up, it does not surface at the first connect). */
export interface BridgeTlsFiles {
  ca?: Buffer[]
  cert?: Buffer
  key?: Buffer
}

export interface BridgeDeps {
  aedes: Aedes
  auth: AuthChain
  /** The listener whose auth settings apply to the bridge's local identity (the first MQTT listener). */
  listener: ListenerConfig
  log: Logger
  maxInflight: number
  /**
   * `retain_available false`: incoming messages lose their retain flag (a client would be disconnected; the bridge
   * would only reconnect and receive the same message again).
   */
  retainAvailable: boolean
  /** `message_size_limit` (0 = none): larger incoming messages are dropped and counted, as for clients. */
  messageSizeLimit: number
  tlsFiles?: BridgeTlsFiles
}

export type BridgeState = 'stopped' | 'connecting' | 'connected' | 'waiting'

export interface BridgeStats {
  sent: number
  received: number
  dropped: number
  /** Successful connections after the first. */
  reconnects: number
  connects: number
}

/** MQTT 3.1.1 CONNACK return codes [MQTT-3.2.2.3]. */
const CONNACK_REASON: Record<number, string> = {
  1: 'unacceptable protocol version',
  2: 'identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized'
}

const TLS_VERSION: Record<string, tls.SecureVersion> = { 'tlsv1.1': 'TLSv1.1', 'tlsv1.2': 'TLSv1.2', 'tlsv1.3': 'TLSv1.3' }

/** How long a lazy bridge's idle check sleeps between looks. */
const IDLE_CHECK_MS = 1_000
/** Refused incoming topics logged per bridge, at most. */
const DENIED_LOGGED_TOPICS = 1_000
/** Messages remembered for the echo filter at most (the oldest are forgotten first). */
const ECHO_MEMORY = 10_000
/** A graceful stop waits this long for the remote to take the last state message and DISCONNECT. */
const STOP_GRACE_MS = 1_000
/** Where brokers' bridges publish their state (mosquitto's default notification_topic): names the bridge's client id. */
const REMOTE_BRIDGE_STATE_FILTER = '$SYS/broker/connection/+/state'
const REMOTE_BRIDGE_STATE = /^\$SYS\/broker\/connection\/([^/]+)\/state$/
/** [MQTT-2.2.1] packet identifiers are 1..65535. */
const MAX_PACKET_ID = 65_535
/** PUBREL, fixed header: type 6 with the reserved flags 0b0010 [MQTT-3.6.1-1], remaining length 2. */
const PUBREL_HEADER = [0x62, 0x02]

/** The MQTT 5 properties that cross a bridge (not topic aliases, subscription identifiers or the expiry, kept apart). */
function bridgeProperties (p: Record<string, unknown> | undefined): BridgeProperties | undefined {
  if (p === undefined) return undefined
  const out: BridgeProperties = {}
  if (p.payloadFormatIndicator !== undefined) out.payloadFormatIndicator = p.payloadFormatIndicator as boolean
  if (p.contentType !== undefined) out.contentType = p.contentType as string
  if (p.responseTopic !== undefined) out.responseTopic = p.responseTopic as string
  if (p.correlationData !== undefined) out.correlationData = Buffer.from(p.correlationData as Buffer)
  if (p.userProperties !== undefined) out.userProperties = p.userProperties as Record<string, string | string[]>
  return Object.keys(out).length > 0 ? out : undefined
}

/** The remaining Message Expiry Interval in seconds, rounded up as aedes does on delivery. */
function remainingSeconds (expiresAt: number, now: number): number {
  return Math.ceil((expiresAt - now) / 1000)
}

/**
 * Packet ids towards the remote. A queued message keeps the id it was first sent with, across reconnects and
 * restarts (a resent PUBLISH and a PUBREL must carry it), so MQTT.js is given ids from here: the id of the message
 * it is about to publish when one is pinned, otherwise a free one (subscriptions, state messages, first sends).
 */
class PacketIds implements NonNullable<IClientOptions['messageIdProvider']> {
  private pinned: number | undefined
  private last = 0
  private next = 0
  /** Ids given out for other packets, until MQTT.js hands them back. */
  private readonly transient = new Set<number>()
  constructor (private readonly held: Set<number>) {}

  /** The next allocate() returns `id`; `undefined` forgets a pin nothing took. */
  pin (id: number | undefined): void { this.pinned = id }

  allocate (): number | null {
    if (this.pinned !== undefined) {
      this.last = this.pinned
      this.pinned = undefined
      return this.last
    }
    for (let i = 0; i < MAX_PACKET_ID; i++) {
      this.next = this.next % MAX_PACKET_ID + 1
      if (this.held.has(this.next) || this.transient.has(this.next)) continue
      this.transient.add(this.next)
      this.last = this.next
      return this.next
    }
    return null
  }

  getLastAllocated (): number | null { return this.last }
  register (): boolean { return true }
  deallocate (id: number): void { this.transient.delete(id) }
  clear (): void {
    this.transient.clear()
    this.pinned = undefined
  }
}

export class Bridge {
  readonly stats: BridgeStats = { sent: 0, received: 0, dropped: 0, reconnects: 0, connects: 0 }
  state: BridgeState = 'stopped'
  /** The last reason the remote refused or dropped the bridge, or the last connection error. */
  lastError: string | undefined
  /** host:port of the remote while connected. */
  remote: string | undefined

  private client: MqttClient | undefined
  /** Bumped for every connection: callbacks of an older client are ignored. */
  private gen = 0
  private readonly inFlight = new Set<QueuedMessage>()
  /** Payloads this bridge published locally (Buffer identity survives aedes' routing): never sent back out. */
  private readonly injected = new WeakSet<Buffer>()
  /** aedes calls the listener once per matching filter: a message is handled once. */
  private readonly seen = new WeakSet<object>()
  private addressIndex = 0
  private delayMs: number
  private timer: NodeJS.Timeout | undefined
  private idleTimer: NodeJS.Timeout | undefined
  /** Without round_robin, while connected to another address: looks whether the first one is back. */
  private probeTimer: NodeJS.Timeout | undefined
  private lastActivity = Date.now()
  private closed = false
  /** The remote answered CONNACK 1 to the private-bridge flag: connect as an ordinary client from then on. */
  private privateRefused = false
  /** Queue-full drops are logged once per episode, not once per message. */
  private fullLogged = false
  private readonly deniedLogged = new Set<string>()
  private readonly outFilters: string[]
  /**
   * A 3.1/3.1.1 remote without the private-bridge flag sends a client its own messages back on topics it also
   * subscribes to (`both`): what was sent on such a topic, as topic + payload hash -> count, is dropped once when it
   * comes back. A remote client publishing the very same payload on the same topic meanwhile is taken for the echo:
   * the local side still sees that content once per message published.
   */
  private readonly echoes = new Map<string, number>()
  private echoFilter = false
  /** MQTT 5: the largest packet the remote takes (CONNACK Maximum Packet Size); 0 = not said. */
  private remoteMaxPacket = 0
  /** Packet ids held by queued messages that were sent; with the ids MQTT.js uses for everything else. */
  private readonly heldIds: Set<number>
  private readonly ids: PacketIds
  /** This connection's sent messages by packet id: PUBREC and PUBCOMP find their message here. */
  private readonly byId = new Map<number, QueuedMessage>()
  /** The remote kept our session (CONNACK session present): a message past PUBREC needs only its PUBREL again. */
  private sessionPresent = false
  /** Client ids of the remote's own bridges (and bridges connected to it), from its notification topics. */
  private readonly remoteBridges = new Set<string>()

  constructor (readonly cfg: BridgeConfig, readonly queue: BridgeQueue, private readonly deps: BridgeDeps) {
    this.delayMs = this.baseDelay()
    this.outFilters = [...new Set(cfg.topics.filter(isOut).map(localFilter))]
    this.heldIds = queue.packetIds()
    this.ids = new PacketIds(this.heldIds)
  }

  private get log (): Logger {
    return this.deps.log
  }

  /** Subscribes the out topics locally; automatic and once bridges connect at once, lazy ones at `threshold`. */
  async start (): Promise<void> {
    for (const f of this.outFilters) {
      await new Promise<void>((resolve, reject) => this.deps.aedes.subscribe(f, this.onLocal as never, (err?: Error) => err ? reject(err) : resolve()))
    }
    this.publishLocalState(0)
    if (this.cfg.startType !== 'lazy' || this.queue.length >= this.cfg.threshold) this.connect()
  }

  // ------------------------------------------------------------------------------------ local -> remote

  private readonly onLocal = (packet: AedesPublishPacket, done: (err?: Error) => void): void => {
    if (this.seen.has(packet)) { done(); return }
    this.seen.add(packet)
    if (this.injected.has(packet.payload as Buffer) || packet.topic === this.cfg.notificationTopic || this.fromRemotesBridge(packet as { clientId?: string })) { done(); return }
    const m = toRemote(this.cfg.topics, packet.topic)
    if (m === undefined) { done(); return }
    const qos = Math.min(packet.qos, m.rule.qos) as 0 | 1 | 2
    const retain = this.cfg.outgoingRetain && packet.retain === true
    const payload = packet.payload as Buffer
    const v5 = packet as AedesPublishPacket & { properties?: Record<string, unknown>, messageExpiry?: number }
    const properties = bridgeProperties(v5.properties)
    const interval = v5.properties?.messageExpiryInterval as number | undefined
    const expiresAt = v5.messageExpiry ?? (interval !== undefined && interval > 0 ? Date.now() + interval * 1000 : undefined)
    if (this.cfg.maxPacketSize > 0 && publishSize(m.topic, payload, qos) > this.cfg.maxPacketSize) {
      this.stats.dropped++
      this.log.warn({ bridge: this.cfg.name, topic: packet.topic }, `Bridge ${this.cfg.name}: message on ${packet.topic} larger than bridge_max_packet_size (${this.cfg.maxPacketSize}), dropped.`)
      done()
      return
    }
    if (qos === 0) {
      if (this.state === 'connected' && this.client) {
        this.expectEcho(m.topic, payload)
        this.client.publish(m.topic, payload, { qos: 0, retain, ...this.publishProperties(properties, expiresAt) })
        this.stats.sent++
        this.touch()
      } else this.stats.dropped++
      done()
      return
    }
    if (this.queue.full) {
      this.stats.dropped++
      if (!this.fullLogged) {
        this.fullLogged = true
        this.log.warn({ bridge: this.cfg.name }, `Bridge ${this.cfg.name}: outgoing queue full (${this.queue.limit} messages, bridge_max_queued_messages): new messages are dropped until the remote takes some.`)
      }
      done()
      return
    }
    this.queue.push({ topic: m.topic, payload, qos, retain, ...(properties ? { properties } : {}), ...(expiresAt !== undefined ? { expiresAt } : {}) }).then(() => {
      this.pump()
      if (this.cfg.startType === 'lazy' && this.state === 'stopped' && this.queue.length >= this.cfg.threshold) this.connect()
      done()
    }, (err: Error) => {
      this.stats.dropped++
      this.log.error({ bridge: this.cfg.name, err: err.message }, `Bridge ${this.cfg.name}: could not store a message for the remote: ${err.message}.`)
      // the publish fails with it: a QoS 1 message then stays in Midge's journal and is routed again after a restart
      done(err)
    })
  }

  /**
   * A message another broker's bridge published here is relayed onward, as mosquitto does (Pi -> relay -> cloud),
   * except over a bridge whose remote runs that bridge: that would send it straight back (two brokers bridged to each
   * other; mosquitto 2.0.11 passes such a message back and forth without end). The remote's bridges are known by
   * their client ids from its notification topics (see onConnected).
   */
  private fromRemotesBridge (packet: { clientId?: string }): boolean {
    return packet.clientId !== undefined && this.remoteBridges.has(packet.clientId)
  }

  /** MQTT 5 only: the properties of a message, with its remaining expiry interval. */
  private publishProperties (p: BridgeProperties | undefined, expiresAt: number | undefined): { properties?: Record<string, unknown> } {
    if (this.cfg.protocolVersion !== 5 || (p === undefined && expiresAt === undefined)) return {}
    return { properties: { ...p, ...(expiresAt !== undefined ? { messageExpiryInterval: remainingSeconds(expiresAt, Date.now()) } : {}) } }
  }

  /** Sends what the window allows, oldest first. */
  private pump (): void {
    const client = this.client
    if (this.state !== 'connected' || client === undefined) return
    const gone: QueuedMessage[] = []
    const now = Date.now()
    for (const e of this.queue.ready()) {
      if (this.inFlight.size >= this.deps.maxInflight) break
      if (this.inFlight.has(e)) continue
      if (this.remoteMaxPacket > 0 && publishSize(e.topic, e.payload, e.qos) > this.remoteMaxPacket) {
        // the remote would end the connection over it, and it would block the queue for good
        this.stats.dropped++
        this.log.warn({ bridge: this.cfg.name, topic: e.topic }, `Bridge ${this.cfg.name}: message on ${e.topic} larger than the remote's maximum packet size (${this.remoteMaxPacket}), dropped.`)
        gone.push(e)
        continue
      }
      // [MQTT-3.3.2-5] an expired message is not sent on; one already past PUBREC is the remote's now
      if (e.expiresAt !== undefined && e.expiresAt <= now && !e.released) {
        this.stats.dropped++
        gone.push(e)
        continue
      }
      this.inFlight.add(e)
      if (e.released && this.sessionPresent) this.release(client, e)
      else this.send(client, e)
    }
    // removed after the walk: the walk goes over the queue itself
    for (const e of gone) void this.done(e)
    if (gone.length > 0) this.pump()
  }

  /** PUBLISH (again: DUP=1, same packet id); acknowledged by PUBACK or, QoS 2, by PUBCOMP after the PUBREL. */
  private send (client: MqttClient, e: QueuedMessage): void {
    const gen = this.gen
    const dup = e.sent
    // a new session on the remote knows nothing of the PUBREC it sent: the message goes again from the start
    e.released = false
    if (e.packetId === undefined) {
      const id = this.ids.allocate()
      if (id === null) { this.inFlight.delete(e); return }
      this.ids.deallocate(id)
      e.packetId = id
      this.heldIds.add(id)
    }
    const id = e.packetId
    if (!dup) {
      this.queue.mark(e, { packetId: id }).catch((err: Error) => this.log.warn({ bridge: this.cfg.name, err: err.message }, `Bridge ${this.cfg.name}: could not record a message as sent (after a restart it goes again without DUP): ${err.message}.`))
    }
    this.byId.set(id, e)
    this.expectEcho(e.topic, e.payload)
    this.ids.pin(id)
    client.publish(e.topic, e.payload, { qos: e.qos, retain: e.retain, dup, ...this.publishProperties(e.properties, e.expiresAt) }, (err) => {
      if (gen !== this.gen) return
      if (err) {
        this.inFlight.delete(e)
        // the connection is going; the entry is sent again after the reconnect
        if ((err as Error & { code?: unknown }).code === undefined) return
        // the remote refused it (MQTT 5 reason code >= 0x80): it would refuse it again
        this.stats.dropped++
        this.log.warn({ bridge: this.cfg.name, topic: e.topic, reasonCode: (err as Error & { code?: unknown }).code }, `Bridge ${this.cfg.name}: the remote refused the message on ${e.topic}: ${err.message}.`)
        void this.done(e)
        this.pump()
        return
      }
      this.acknowledged(e)
    })
    // MQTT.js took the pin unless it refused the publish (closing): the next packet must not get this id
    this.ids.pin(undefined)
  }

  /** QoS 2 past PUBREC before a reconnect or restart, session kept by the remote: only the PUBREL goes again. */
  private release (client: MqttClient, e: QueuedMessage): void {
    const id = e.packetId!
    this.byId.set(id, e)
    // MQTT.js has no call for a PUBREL of a message it did not send itself; it ignores the PUBCOMP (see onPacket)
    client.stream.write(Buffer.from([...PUBREL_HEADER, id >> 8, id & 0xff]))
  }

  /** PUBREC and PUBCOMP as they arrive, for the messages of this connection. */
  private onPacket (gen: number, packet: Packet): void {
    if (gen !== this.gen || (packet.cmd !== 'pubrec' && packet.cmd !== 'pubcomp')) return
    const id = packet.messageId
    const e = id === undefined ? undefined : this.byId.get(id)
    if (e === undefined || !this.inFlight.has(e)) return
    if (packet.cmd === 'pubrec') {
      if ((packet.reasonCode ?? 0) >= 0x80) return // MQTT.js calls the publish back with the error
      this.queue.mark(e, { released: true }).catch((err: Error) => this.log.warn({ bridge: this.cfg.name, err: err.message }, `Bridge ${this.cfg.name}: could not record a PUBREC (after a restart the message goes again): ${err.message}.`))
    } else if (e.released && this.sessionPresent && this.client?.outgoing[id!] === undefined) {
      // the PUBCOMP to a PUBREL sent by release(): MQTT.js does not know the message
      this.acknowledged(e)
    }
  }

  private acknowledged (e: QueuedMessage): void {
    this.stats.sent++
    if (!this.queue.full) this.fullLogged = false
    this.touch()
    // its slot is freed once its removal is written: a SIGKILL then sends again at most max_inflight_messages
    // messages (in flight, or acknowledged and not yet removed), however slow the store is
    void this.done(e).then(() => {
      this.inFlight.delete(e)
      this.pump()
    })
  }

  /** Out of the queue: acknowledged, refused, expired or too large. Resolves once the removal is written (or failed). */
  private done (e: QueuedMessage): Promise<void> {
    if (e.packetId !== undefined) {
      this.heldIds.delete(e.packetId)
      if (this.byId.get(e.packetId) === e) this.byId.delete(e.packetId)
    }
    return this.queue.ack(e).catch((err: Error) => this.log.error({ bridge: this.cfg.name, err: err.message }, `Bridge ${this.cfg.name}: could not remove a message from the queue: ${err.message}.`))
  }

  private echoKey (topic: string, payload: Buffer): string | undefined {
    if (!this.echoFilter || toLocal(this.cfg.topics, topic) === undefined) return undefined
    return `${topic}\u0000${createHash('sha1').update(payload).digest('base64')}`
  }

  private expectEcho (topic: string, payload: Buffer): void {
    const k = this.echoKey(topic, payload)
    if (k === undefined) return
    this.echoes.set(k, (this.echoes.get(k) ?? 0) + 1)
    if (this.echoes.size > ECHO_MEMORY) this.echoes.delete(this.echoes.keys().next().value!)
  }

  /** True (and forgotten) if this is a message of ours coming back. */
  private isEcho (topic: string, payload: Buffer): boolean {
    const k = this.echoKey(topic, payload)
    const n = k === undefined ? undefined : this.echoes.get(k)
    if (n === undefined) return false
    if (n <= 1) this.echoes.delete(k!)
    else this.echoes.set(k!, n - 1)
    return true
  }

  // ------------------------------------------------------------------------------------ remote -> local

  private onRemote (packet: IPublishPacket, cb: (err?: Error) => void): void {
    const m = toLocal(this.cfg.topics, packet.topic)
    // a filter the remote still holds from an older configuration (cleansession false)
    if (m === undefined) { cb(); return }
    if (this.isEcho(packet.topic, packet.payload as Buffer)) { cb(); return }
    this.stats.received++
    this.touch()
    const qos = Math.min(packet.qos, m.rule.qos) as 0 | 1 | 2
    const retain = packet.retain === true && this.deps.retainAvailable
    const topic = m.topic
    const refuse = (why: string): void => {
      this.stats.dropped++
      // once per topic, for the first topics: a remote flooding refused topics must not flood the log
      if (!this.deniedLogged.has(topic) && this.deniedLogged.size < DENIED_LOGGED_TOPICS) {
        this.deniedLogged.add(topic)
        this.log.warn({ bridge: this.cfg.name, topic, clientId: this.cfg.localClientId }, `Bridge ${this.cfg.name}: message from the remote on ${topic} not published here: ${why}.`)
      }
      cb()
    }
    // the same hard rule as for clients: nobody publishes into the broker's own $ tree
    if (topic.startsWith('$')) { refuse('topics starting with $ are reserved'); return }
    if (this.deps.messageSizeLimit > 0 && (packet.payload as Buffer).length > this.deps.messageSizeLimit) { refuse(`larger than message_size_limit (${this.deps.messageSizeLimit})`); return }
    const payload = Buffer.from(packet.payload as Buffer)
    this.deps.auth.authorize({
      clientId: this.cfg.localClientId,
      ...(this.cfg.localUsername !== undefined ? { username: this.cfg.localUsername } : {}),
      conn: { listener: this.deps.listener },
      action: 'publish',
      topic,
      qos,
      retain
    }).then(ok => {
      if (!ok) { refuse(`denied by the ACL for the bridge's local identity (local_username ${this.cfg.localUsername ?? 'not set'})`); return }
      this.injected.add(payload)
      const props = packet.properties as Record<string, unknown> | undefined
      const interval = props?.messageExpiryInterval as number | undefined
      const properties = { ...bridgeProperties(props), ...(interval !== undefined ? { messageExpiryInterval: interval } : {}) }
      this.deps.aedes.publish({ cmd: 'publish', topic, payload, qos, retain, dup: false, ...(Object.keys(properties).length > 0 ? { properties } : {}) } as AedesPublishPacket, (err?: Error) => cb(err ?? undefined))
    }, (err: Error) => refuse(`ACL check failed: ${err.message}`))
  }

  // ------------------------------------------------------------------------------------ connection

  private baseDelay (): number {
    const r = this.cfg.restartTimeout
    return (r.kind === 'constant' ? r.seconds : r.base) * 1000
  }

  /** mosquitto's "decorrelated jitter": the next wait is random between the base and three times the last, capped. */
  private nextDelay (): number {
    const r = this.cfg.restartTimeout
    if (r.kind === 'constant') return r.seconds * 1000
    const base = r.base * 1000
    this.delayMs = Math.min(r.cap * 1000, base + Math.random() * (this.delayMs * 3 - base))
    return Math.round(this.delayMs)
  }

  private address (): BridgeAddress {
    return this.cfg.addresses[this.addressIndex % this.cfg.addresses.length]!
  }

  private usePrivateFlag (): boolean {
    return this.cfg.tryPrivate && this.cfg.protocolVersion !== 5 && !this.privateRefused
  }

  private options (a: BridgeAddress): IClientOptions {
    const c = this.cfg
    const o: IClientOptions = {
      protocolVersion: c.protocolVersion,
      clientId: c.remoteClientId,
      clean: c.cleanSession,
      keepalive: c.keepaliveSeconds,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      resubscribe: false,
      messageIdProvider: this.ids,
      ...(c.remoteUsername !== undefined ? { username: c.remoteUsername } : {}),
      ...(c.remotePassword !== undefined ? { password: c.remotePassword } : {}),
      ...(c.protocolVersion === 5 && c.maxPacketSize > 0 ? { properties: { maximumPacketSize: c.maxPacketSize } } : {})
    }
    // the remote learns that we are gone from our will: the same retained 0 mosquitto sends
    if (c.notifications && !c.notificationsLocalOnly) o.will = { topic: c.notificationTopic, payload: Buffer.from('0'), qos: 1, retain: true }
    if (a.websocket) {
      Object.assign(o, { protocol: a.websocket.secure ? 'wss' : 'ws', host: a.host, port: a.port, path: a.websocket.path, ...this.tlsOptions(a) })
    }
    return o
  }

  private tlsOptions (a: BridgeAddress): tls.ConnectionOptions {
    const t = this.cfg.tls
    const f = this.deps.tlsFiles
    if (!t) return {}
    return {
      host: a.host,
      port: a.port,
      ...(net.isIP(a.host) === 0 ? { servername: a.host } : {}),
      ...(f?.ca ? { ca: f.ca } : {}),
      ...(f?.cert ? { cert: f.cert } : {}),
      ...(f?.key ? { key: f.key } : {}),
      rejectUnauthorized: true,
      minVersion: TLS_VERSION[t.version] ?? 'TLSv1.2',
      ...(t.insecure ? { checkServerIdentity: () => undefined } : {}),
      ...(t.alpn ? { ALPNProtocols: [t.alpn] } : {})
    }
  }

  /** TCP or TLS, with bridge_bind_address and the private-bridge flag: a stream of our own, MQTT.js speaks MQTT over it. */
  private stream (a: BridgeAddress): Duplex {
    const local = this.cfg.bindAddress !== undefined ? { localAddress: this.cfg.bindAddress } : {}
    const s = this.cfg.tls ? tls.connect({ ...this.tlsOptions(a), ...local }) : net.connect({ host: a.host, port: a.port, ...local })
    if (this.usePrivateFlag()) markPrivateBridge(s, this.cfg.protocolVersion === 3 ? 6 : 4)
    return s
  }

  private connect (): void {
    if (this.closed) return
    clearTimeout(this.timer)
    const a = this.address()
    const gen = ++this.gen
    this.state = 'connecting'
    const where = `${a.host}:${a.port}`
    const opts = this.options(a)
    // v5 asks for No Local; the private flag makes mosquitto (and Midge) hold back our own messages
    this.echoFilter = this.cfg.protocolVersion !== 5 && (a.websocket !== undefined || !this.usePrivateFlag())
    let client: MqttClient
    // MQTT.js builds WebSocket streams itself (ws/wss, TLS options included); TCP and TLS are ours (bind address)
    if (a.websocket) client = mqttConnect(opts)
    else client = new MqttClient(() => this.stream(a), opts)
    this.client = client
    client.handleMessage = (packet, cb) => {
      if (gen !== this.gen) { cb(); return }
      const bridgeId = REMOTE_BRIDGE_STATE.exec(packet.topic)?.[1]
      if (bridgeId !== undefined) this.remoteBridges.add(bridgeId)
      this.onRemote(packet, cb)
    }
    client.on('packetreceive', (packet: Packet) => this.onPacket(gen, packet))
    client.on('connect', (connack: IConnackPacket) => { if (gen === this.gen) this.onConnected(where, connack) })
    client.on('error', (err: Error & { code?: unknown }) => {
      if (gen !== this.gen) return
      const code = typeof err.code === 'number' ? err.code : undefined
      if (code === 1 && this.usePrivateFlag()) {
        // mosquitto's private-bridge flag is not MQTT: brokers other than mosquitto refuse it
        this.privateRefused = true
        this.log.warn({ bridge: this.cfg.name, remote: where }, `Bridge ${this.cfg.name}: ${where} refused the private bridge flag (CONNACK 1); connecting as an ordinary client (set try_private false to skip this).`)
        this.lastError = 'CONNACK 1 (unacceptable protocol version) to the private bridge flag'
        this.dropClient()
        this.state = 'waiting'
        this.timer = setTimeout(() => this.connect(), 0)
        return
      }
      this.lastError = code !== undefined ? `CONNACK ${code} (${CONNACK_REASON[code] ?? err.message})` : err.message
      if (code !== undefined) {
        this.log.error({ bridge: this.cfg.name, remote: where, returnCode: code }, `Bridge ${this.cfg.name}: ${where} refused the connection: CONNACK ${code} (${CONNACK_REASON[code] ?? err.message}).`)
      } else {
        this.log.warn({ bridge: this.cfg.name, remote: where, err: err.message }, `Bridge ${this.cfg.name}: connection to ${where} failed: ${err.message}.`)
      }
    })
    client.on('disconnect', (packet: IDisconnectPacket) => {
      if (gen !== this.gen) return
      // MQTT 5: the remote says why it ends the connection
      this.lastError = `DISCONNECT reason ${packet.reasonCode ?? 0}${packet.properties?.reasonString ? ` (${packet.properties.reasonString})` : ''}`
      this.log.warn({ bridge: this.cfg.name, remote: where, reasonCode: packet.reasonCode }, `Bridge ${this.cfg.name}: ${where} disconnected the bridge: ${this.lastError}.`)
    })
    client.on('close', () => { if (gen === this.gen) this.onClosed(where) })
  }

  private onConnected (where: string, connack: IConnackPacket): void {
    const c = this.cfg
    this.state = 'connected'
    this.remote = where
    this.stats.connects++
    if (this.stats.connects > 1) this.stats.reconnects++
    this.delayMs = this.baseDelay()
    this.remoteMaxPacket = connack.properties?.maximumPacketSize ?? 0
    this.sessionPresent = connack.sessionPresent
    this.touch()
    this.log.info({ bridge: c.name, remote: where, sessionPresent: connack.sessionPresent }, `Bridge ${c.name}: connected to ${where} as ${c.remoteClientId} (MQTT ${c.protocolVersion === 5 ? '5' : c.protocolVersion === 4 ? '3.1.1' : '3.1'}, session present ${connack.sessionPresent ? 1 : 0}, ${this.queue.length} queued).`)
    const client = this.client!
    const subs: Record<string, { qos: 0 | 1 | 2, nl?: boolean, rap?: boolean }> = {}
    for (const t of c.topics.filter(isIn)) {
      const f = remoteFilter(t)
      const prev = subs[f]
      subs[f] = { qos: Math.max(prev?.qos ?? 0, t.qos) as 0 | 1 | 2, ...(c.protocolVersion === 5 ? { nl: true, rap: true } : {}) }
    }
    // the remote's bridges, from the notification each publishes there (mosquitto's and Midge's default topic): a
    // message one of them published here does not go back over this bridge (fromRemotesBridge)
    this.remoteBridges.clear()
    subs[REMOTE_BRIDGE_STATE_FILTER] = { qos: 0, ...(c.protocolVersion === 5 ? { nl: true, rap: true } : {}) }
    if (Object.keys(subs).length > 0) {
      client.subscribe(subs, (err, granted) => {
        if (err) { this.log.warn({ bridge: c.name, err: err.message }, `Bridge ${c.name}: subscribing on the remote failed: ${err.message}.`); return }
        for (const g of granted ?? []) {
          if (g.qos === 128 || g.qos >= 0x80) this.log.warn({ bridge: c.name, topic: g.topic }, `Bridge ${c.name}: the remote refused the subscription to ${g.topic} (SUBACK ${g.qos}).`)
        }
      })
    }
    // a topic that moved from in to out must stop arriving from a session the remote kept
    const outOnly = c.topics.filter(t => t.direction === 'out').map(remoteFilter).filter(f => subs[f] === undefined)
    if (c.attemptUnsubscribe && !c.cleanSession && outOnly.length > 0) client.unsubscribe([...new Set(outOnly)])
    // after the SUBSCRIBE: the remote handles a connection's packets in order, so once it shows state 1 the in
    // topics are subscribed
    if (c.notifications) {
      this.publishLocalState(1)
      if (!c.notificationsLocalOnly) client.publish(c.notificationTopic, '1', { qos: 1, retain: true })
    }
    if (c.startType === 'lazy') this.armIdleCheck()
    if (!c.roundRobin && this.addressIndex !== 0) this.armPrimaryProbe()
    if (c.localCleanSession && this.queue.length > 0) {
      void this.cleanLocalSession()
      return
    }
    this.pump()
  }

  /**
   * local_cleansession true (the default with cleansession true): as mosquitto 2.0.11 does, what was queued here
   * while the bridge was not connected is dropped when it connects (measured: 2 QoS 1 messages published during an
   * outage reach the remote with local_cleansession false, none with true, on the first connection and on a
   * reconnection).
   */
  private async cleanLocalSession (): Promise<void> {
    const gen = this.gen
    this.heldIds.clear()
    let n = 0
    try {
      n = await this.queue.clear()
    } catch (err) {
      this.log.error({ bridge: this.cfg.name, err: (err as Error).message }, `Bridge ${this.cfg.name}: could not empty the queue (local_cleansession true): ${(err as Error).message}.`)
    }
    this.stats.dropped += n
    this.log.warn({ bridge: this.cfg.name, dropped: n }, `Bridge ${this.cfg.name}: local_cleansession true: ${n} message(s) queued while not connected dropped.`)
    if (gen === this.gen) this.pump()
  }

  private onClosed (where: string): void {
    const wasConnected = this.state === 'connected'
    this.dropClient()
    if (wasConnected) {
      this.publishLocalState(0)
      this.log.warn({ bridge: this.cfg.name, remote: where, queued: this.queue.length }, `Bridge ${this.cfg.name}: connection to ${where} lost (${this.queue.length} queued).`)
    }
    if (this.closed || this.state === 'stopped') return
    // next address: round_robin moves on after every failure; otherwise the first address is the main one and is
    // tried first again after a lost connection
    if (this.cfg.roundRobin || !wasConnected) this.addressIndex = (this.addressIndex + 1) % this.cfg.addresses.length
    else this.addressIndex = 0
    if (this.cfg.startType === 'once') {
      this.state = 'stopped'
      this.log.warn({ bridge: this.cfg.name }, `Bridge ${this.cfg.name}: not restarted (start_type once).`)
      return
    }
    const delay = this.nextDelay()
    this.state = 'waiting'
    this.log.info({ bridge: this.cfg.name, delayMs: delay }, `Bridge ${this.cfg.name}: reconnecting in ${(delay / 1000).toFixed(1)} s.`)
    this.timer = setTimeout(() => this.connect(), delay)
  }

  /** Forgets the current client: its late callbacks are ignored, its socket is closed. */
  private dropClient (): void {
    const client = this.client
    this.client = undefined
    this.remote = undefined
    this.inFlight.clear()
    this.byId.clear()
    this.gen++
    clearInterval(this.idleTimer)
    clearInterval(this.probeTimer)
    if (client) client.end(true)
    if (this.state === 'connected' || this.state === 'connecting') this.state = 'waiting'
  }

  /**
   * mosquitto's behaviour without round_robin: the first address is the main one; while connected to another, a TCP
   * connection to the main one is tried every restart_timeout (its base), and once it answers the bridge moves back.
   */
  private armPrimaryProbe (): void {
    clearInterval(this.probeTimer)
    const main = this.cfg.addresses[0]!
    let probing = false
    this.probeTimer = setInterval(() => {
      if (probing || this.state !== 'connected') return
      probing = true
      const sock = net.connect({ host: main.host, port: main.port, ...(this.cfg.bindAddress !== undefined ? { localAddress: this.cfg.bindAddress } : {}) })
      sock.setTimeout(5_000, () => sock.destroy())
      sock.once('error', () => { probing = false })
      sock.once('close', () => { probing = false })
      sock.once('connect', () => {
        sock.destroy()
        if (this.state !== 'connected' || this.closed) return
        this.log.info({ bridge: this.cfg.name, remote: `${main.host}:${main.port}` }, `Bridge ${this.cfg.name}: the main address ${main.host}:${main.port} answers again, moving back to it.`)
        void this.disconnect().then(() => {
          if (this.closed) return
          this.addressIndex = 0
          this.connect()
        })
      })
    }, this.baseDelay()).unref()
  }

  // ------------------------------------------------------------------------------------ lazy start

  private touch (): void {
    this.lastActivity = Date.now()
  }

  /** start_type lazy: stopped after idle_timeout seconds with nothing queued and nothing sent or received. */
  private armIdleCheck (): void {
    clearInterval(this.idleTimer)
    clearInterval(this.probeTimer)
    this.idleTimer = setInterval(() => {
      if (this.state !== 'connected' || this.queue.length > 0) return
      if (Date.now() - this.lastActivity < this.cfg.idleTimeoutSeconds * 1000) return
      this.log.info({ bridge: this.cfg.name }, `Bridge ${this.cfg.name}: idle for ${this.cfg.idleTimeoutSeconds} s, stopping (start_type lazy).`)
      void this.disconnect().then(() => { this.state = 'stopped' })
    }, Math.min(IDLE_CHECK_MS, this.cfg.idleTimeoutSeconds * 1000)).unref()
  }

  // ------------------------------------------------------------------------------------ notifications

  private publishLocalState (v: 0 | 1): void {
    if (!this.cfg.notifications) return
    const payload = Buffer.from(String(v))
    this.injected.add(payload)
    this.deps.aedes.publish({ cmd: 'publish', topic: this.cfg.notificationTopic, payload, qos: 1, retain: true, dup: false } as AedesPublishPacket, err => {
      if (err) this.log.warn({ bridge: this.cfg.name, topic: this.cfg.notificationTopic, err: err.message }, `Bridge ${this.cfg.name}: could not publish its state locally: ${err.message}.`)
    })
  }

  /** A clean end: the remote's state topic set to 0 (a DISCONNECT discards the will), then DISCONNECT. */
  private async disconnect (): Promise<void> {
    const client = this.client
    if (!client) return
    const c = this.cfg
    const gen = ++this.gen // from here on, close events are ours, not a lost connection
    const wasConnected = this.state === 'connected'
    this.state = 'stopped'
    clearInterval(this.idleTimer)
    clearInterval(this.probeTimer)
    await new Promise<void>(resolve => {
      const t = setTimeout(resolve, STOP_GRACE_MS)
      const end = (): void => { client.end(false, {}, () => { clearTimeout(t); resolve() }) }
      if (wasConnected && c.notifications && !c.notificationsLocalOnly) client.publish(c.notificationTopic, '0', { qos: 1, retain: true }, end)
      else end()
    })
    if (gen === this.gen) { this.client = undefined; this.inFlight.clear(); this.byId.clear() }
    client.end(true)
    if (wasConnected) this.publishLocalState(0)
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.timer)
    clearInterval(this.idleTimer)
    clearInterval(this.probeTimer)
    for (const f of this.outFilters) this.deps.aedes.unsubscribe(f, this.onLocal as never, () => {})
    await this.disconnect()
    await this.queue.close()
  }
}

/**
 * mosquitto's private-bridge flag: the CONNECT's protocol level with its top bit set (0x83/0x84), so that a mosquitto
 * remote knows the client is a bridge and sends it nothing it published itself. MQTT.js does not write the flag, so the
 * first bytes written on the socket are watched for the level byte: fixed header, remaining length (1-4 bytes),
 * protocol name length (2), protocol name ('MQTT', or 'MQIsdp' for 3.1), level.
 */
function markPrivateBridge (s: Duplex, nameLength: number): void {
  const write = s.write.bind(s) as (chunk: unknown, ...rest: unknown[]) => boolean
  let index = 0
  let lengthEnd = -1
  let done = false
  s.write = ((chunk: unknown, ...rest: unknown[]): boolean => {
    if (done) return write(chunk, ...rest)
    let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string, typeof rest[0] === 'string' ? rest[0] as BufferEncoding : 'utf8')
    if (typeof rest[0] === 'string') rest = rest.slice(1)
    for (let i = 0; i < buf.length; i++, index++) {
      if (index >= 1 && lengthEnd < 0 && (buf[i]! & 0x80) === 0) lengthEnd = index
      if (lengthEnd >= 0 && index === lengthEnd + 3 + nameLength) {
        buf = Buffer.from(buf)
        buf[i] = buf[i]! | 0x80
        done = true
        break
      }
    }
    return write(buf, ...rest)
  }) as typeof s.write
}

/** PUBLISH size on the wire, for bridge_max_packet_size: fixed header (<= 5) + topic + packet id + payload. */
function publishSize (topic: string, payload: Buffer, qos: number): number {
  const body = 2 + Buffer.byteLength(topic) + (qos > 0 ? 2 : 0) + payload.length
  return body + 1 + (body < 128 ? 1 : body < 16_384 ? 2 : body < 2_097_152 ? 3 : 4)
}
