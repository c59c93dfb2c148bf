/**
 * The Broker owns aedes, the store, the auth chain and the listeners, and orders their start and stop:
 * start: persistence -> auth -> aedes -> every listener (one failing closes the others, nothing half-started);
 * close: stop accepting -> close clients (aedes) -> flush and close the store -> close auth, within a deadline.
 */
import { writeFileSync, rmSync } from 'node:fs'
import type { Duplex } from 'node:stream'
import type { EventEmitter } from 'node:events'
import type { AddressInfo, Socket } from 'node:net'
import type { IncomingMessage } from 'node:http'
import { Aedes, type Client } from 'aedes'
import mqttPacket from 'mqtt-packet'
import type { Config, ListenerConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import { BrokerError } from '../errors.js'
import { AuthChain } from '../auth/chain.js'
import { createPersistence, type PersistenceBackend } from '../persistence/index.js'
import { redisBackend } from '../cluster/store.js'
import { Durability } from '../persistence/durability.js'
import { Qos0Queue } from './qos0-queue.js'
import { installDelivery, deliveryPacketRule, keepsUp, type DeliveryOptions } from './delivery.js'
import { admitStored } from './delivery.js'
import { isCorruption, corruptStoreError, storePath } from '../persistence/level.js'
import { listenerFactories, type Listener, type ConnectionContext } from '../listeners/index.js'
import { HttpRouter } from '../http/router.js'
import { createHooks, V5, type Hooks } from './aedes-hooks.js'
import { hookStages, composeHooks, stageNames, type HookName } from './hook-stages.js'
import { checkAedes, hardenBroker, hardenClient, leanParserList, subscriptionsOf, brokerInternals, connectedClients, clientInternals, clientOfConnection, applyPacketRules, type PacketRule } from '../aedes/internals.js'
import { amendConnack } from './connack.js'
import { enhancedAuthStage, type EnhancedAuthOutcome } from './enhanced-auth.js'
import { inboundRules, type InboundRules } from './inbound.js'
import { composePacketRules } from './packet-rules.js'
import { SharedSubscriptions, displayFilter } from './shared-subscriptions.js'
import { installInboundFramer, type GuardError, type FramerOptions } from './inbound-framer.js'
import { ConnectionRateLimiter, SubscriptionCounter, OncePerSecond } from './limits.js'
import { readOneBatchAtATime } from './read-loop.js'
import { mountPointRule, mountStream } from '../listeners/mount-point.js'
import { TopicEmitter } from './emitter.js'
import { clusterAedesOptions, attachCluster } from '../cluster/wire.js'
import { coalesceWrites, flushWrites, type WriteHooks } from './write-coalescer.js'
import { MidgeStore } from '../persistence/store.js'
import { BrokerStats, storeOf } from '../sys/stats.js'
import { wireStats, trackConnection, countPackets } from '../sys/wire.js'
import { MAX_REMAINING_LENGTH } from '../mqtt/frames.js'
import { SysPublisher } from '../sys/sys-publisher.js'
import { createMetrics } from '../sys/metrics.js'
import { registerObservabilityRoutes } from '../http/observability.js'
import { registerCsrRoutes } from '../http/csr.js'
import { registerAdminRoutes } from '../admin/index.js'
import { Bridges, withBridgeMetrics } from '../bridge/index.js'
import { BridgePeers } from '../bridge/peers.js'
import { lingerAfterServerDisconnect } from './server-disconnect.js'
import { OutgoingTopicAliases } from './topic-alias-out.js'

/** Fixed overhead a PUBLISH may carry beyond its payload: topic length + topic + packet id. */
const PUBLISH_OVERHEAD = 2 + 65_535 + 2
/**
 * Packets aedes may take from one connection per read (inbound-framer.ts). Measured with 23-flood (200
 * publishers): event-loop stalls of 6-12 s without a cap, under 1.5 s with 16; single-publisher throughput unchanged.
 */
const READ_BATCH_PACKETS = 16
/** A subscriber none of whose writes completed for this long no longer holds its publishers (delivery.ts). */
const STUCK_AFTER_MS = 1000
const CONNACK_UNACCEPTABLE_PROTOCOL = Buffer.from([0x20, 0x02, 0x00, 0x01])
/** MQTT 5 CONNACK 0x84 (Unsupported Protocol Version), no properties. */
const CONNACK_V5_UNSUPPORTED_PROTOCOL = Buffer.from([0x20, 0x03, 0x00, 0x84, 0x00])

export interface BoundListener {
  config: ListenerConfig
  address: AddressInfo
}

export interface BrokerOptions {
  log: Logger
}

export class Broker {
  readonly router = new HttpRouter()
  readonly bound: BoundListener[] = []
  /** Live connection count per listener id. */
  readonly connections = new Map<string, number>()
  private readonly contexts = new WeakMap<Duplex, ConnectionContext>()
  /** Connections allowed by MQTT 5 enhanced authentication (enhanced-auth.ts), read by the hooks. */
  private readonly enhancedAuth = new WeakMap<Duplex, EnhancedAuthOutcome>()
  private readonly listeners: Listener[] = []
  private rateLimiter!: ConnectionRateLimiter
  private subscriptionCounter!: SubscriptionCounter
  /** max_connections refusals are logged once per listener per second (limits.ts) */
  private readonly refusalLog = new OncePerSecond()
  private closing: Promise<void> | undefined
  /** $SYS and /metrics counters (src/sys/). */
  readonly stats = new BrokerStats()
  private sys: SysPublisher | undefined
  aedes!: Aedes
  hooks!: Hooks
  /** Each aedes hook's stages, outermost first (hook-stages.ts). */
  hookStages!: Record<HookName, string[]>
  auth!: AuthChain
  persistence!: PersistenceBackend
  /** QoS 1 journal, queue limits, session expiry, slow consumers (src/persistence/durability.ts). */
  durability!: Durability
  /** Live delivery's limits: the same object for every client (memory per idle connection). */
  private deliveryOptions!: DeliveryOptions
  /** `connection` blocks (src/bridge/). */
  bridges: Bridges | undefined
  /** Other brokers' bridges connected here (src/bridge/peers.ts). */
  readonly bridgePeers = new BridgePeers()
  /** `$share/GROUP/FILTER` routing (src/broker/shared-subscriptions.ts). */
  shared!: SharedSubscriptions

  private constructor (readonly config: Config, readonly log: Logger) {}

  static async start (config: Config, opts: BrokerOptions): Promise<Broker> {
    const b = new Broker(config, opts.log)
    try {
      await b.startInternal()
    } catch (err) {
      // the start-up error is the one to report; close() only releases what was opened
      await b.close().catch((closeErr: Error) => b.log.warn({ err: closeErr.message }, 'releasing a failed start-up failed'))
      throw err
    }
    return b
  }

  private async installQos0Queue (): Promise<void> {
    const l = this.config.limits
    const queue = new Qos0Queue({
      maxMessages: l.maxQueuedMessages,
      maxBytes: l.maxQueuedBytes,
      storedFor: id => this.durability.accounting.queued(id),
      stats: this.durability.stats,
      log: this.log
    })
    if (this.persistence.db) await queue.load(this.persistence.db, this.durability.persistence as Parameters<Qos0Queue['load']>[1])
    queue.attach(this.aedes)
    this.durability.expiry?.onRemoved(id => queue.forget(id))
  }

  private async startInternal (): Promise<void> {
    const { config, log } = this
    // mqtt-packet writes 2-byte numbers (lengths, packet identifiers) from a table of 65,536 Buffers that it builds
    // when the first packet is written: 7.4 MB kept for the life of the process, a tenth of an idle broker with
    // 10,000 connections (heap sampling of the connect storm). It writes each number as it comes instead.
    mqttPacket.writeToStream.cacheNumbers = false
    // cluster_redis wins: a cluster node's store is Redis, shared with the other nodes
    const clusterStore = config.cluster !== undefined ? await redisBackend(config.cluster, log) : undefined
    this.persistence = clusterStore ?? await createPersistence(config.persistence, log)
    this.durability = new Durability(this.persistence, config, log)
    this.stats.persistence = this.durability.stats // $SYS publish/messages/dropped, clients/expired
    this.auth = await AuthChain.create(config, log)
    this.rateLimiter = new ConnectionRateLimiter(config.limits.maxConnectionRate)
    this.subscriptionCounter = new SubscriptionCounter(config.limits.maxSubscriptionsPerClient)
    // cluster_redis: routing through Redis, heartbeat, CONNECT/PUBLISH refused while Redis is down
    const cluster = clusterStore?.cluster
    const emitter = cluster ? undefined : new TopicEmitter()
    const durability = this.durability
    this.hooks = createHooks({
      config,
      auth: this.auth,
      log,
      contexts: this.contexts,
      enhancedAuth: this.enhancedAuth,
      subscriptions: this.subscriptionCounter,
      onDropped: () => { this.stats.publishDropped++ },
      // connected clients and bridges in the emitter, sessions away in the store; a cluster's other nodes are unknown
      subscribers: emitter === undefined ? undefined : async (topic, bytes) => emitter.match(topic).length > 0 ? 'room' : await durability.storedSubscribers(topic, bytes),
      // the memory and LevelDB stores have it; aedes-persistence-redis 11 does not
      cleanIncoming: client => {
        const store = brokerInternals(this.aedes).persistence as { cleanIncoming?: (c: { id: string }) => Promise<void> }
        return store.cleanIncoming === undefined ? Promise.resolve() : store.cleanIncoming(client)
      }
    })
    this.shared = new SharedSubscriptions({ enabled: config.cluster === undefined, aedes: () => this.aedes, auth: this.auth, clientInfo: this.hooks.clientInfo, maxInflight: config.limits.maxInflightMessages, subscriptions: this.subscriptionCounter, onDropped: () => { this.stats.publishDropped++ }, log })
    this.shared.watchStore(this.persistence.aedes as object)
    this.hooks.connackAmendment = this.shared.wrapConnack(this.hooks.connackAmendment)
    this.stats.sharedSubscriptions = () => this.shared.count()
    const stages = hookStages({ base: this.hooks, bridgePeers: this.bridgePeers, shared: this.shared, durability: this.durability, stats: this.stats, ...(cluster ? { cluster } : {}) })
    this.hookStages = stageNames(stages)
    log.debug({ stages: this.hookStages }, 'aedes hook stages, outermost first')
    this.durability.queuesShared = topic => this.shared.queuesFor(topic)
    this.aedes = await this.storeStep(() => Aedes.createBroker({
      // a store that sorts queues across restarts, queue limits
      ...(this.durability.brokerId !== undefined ? { id: this.durability.brokerId } : {}),
      // the steps Midge adds around the backend, in one class (src/persistence/store.ts)
      persistence: new MidgeStore({
        backend: this.durability.persistence,
        // a store shared by several nodes (cluster_redis) cannot be counted per process: see cluster/store.ts
        accounting: this.persistence.shared === true ? undefined : this.durability.accounting,
        // LevelDB completes concurrent writes in any order; memory and Redis answer in order
        inCallOrder: this.persistence.name === 'level',
        admitStored,
        log
      }),
      // mqemitter's concurrency queue overflows the stack under floods; see emitter.ts
      mq: cluster?.mq ?? emitter,
      connectTimeout: config.limits.connectTimeoutMs,
      // one stuck subscriber must not stall delivery to everyone (REFERENCE.md: aedes facts)
      drainTimeout: 30_000,
      maxClientsIdLength: 23,
      // MQTT 5 limits aedes enforces and advertises; connack.ts makes the CONNACK per listener
      maximumPacketSize: config.limits.maxPacketSize,
      topicAliasMaximum: Math.max(0, ...config.listeners.map(l => l.maxTopicAlias)),
      // the inbound window a v5 client is given: max_inflight_messages, as mosquitto sends it
      receiveMaximum: config.limits.maxInflightMessages,
      ...(cluster ? clusterAedesOptions(cluster) : {}),
      // every hook as its ordered stages (hook-stages.ts)
      ...composeHooks(stages)
    }))
    checkAedes(this.aedes)
    hardenBroker(this.aedes)
    // a connected client that keeps up is not held to the queue limits of offline ones (persistence/limits.ts)
    this.durability.accounting.keepsUp = id => {
      const c = connectedClients(this.aedes)[id]
      return c !== undefined && keepsUp(c)
    }
    const l = config.limits
    this.deliveryOptions = {
      maxPending: l.maxQueuedMessages > 0 ? l.maxQueuedMessages + l.maxInflightMessages : 0,
      maxInflight: l.maxInflightMessages,
      maxWaiting: l.maxQueuedMessages,
      maxPendingBytes: l.maxQueuedBytes,
      stuckAfterMs: STUCK_AFTER_MS,
      stats: this.durability.stats,
      accounting: this.durability.accounting,
      log
    }
    // aedes is an EventEmitter, but its typed `on` lists its own events only, not 'error'
    const events: EventEmitter = this.aedes
    events.on('error', (err: Error) => log.error({ err: err.message }, 'broker error'))
    this.wireLogging()
    // before the journal replay: a replayed message must reach the bridges' queues too
    // persistent members stored before this start, before the journal replay routes anything to their groups
    this.shared.attach()
    await this.storeStep(() => this.shared.load(this.persistence.db))
    this.bridges = await Bridges.start({ config, aedes: this.aedes, auth: this.auth, log, ...(cluster ? { cluster: { redis: cluster.conns.store, holder: cluster.brokerId } } : {}) })
    // before the replay too: a replayed message may be due to an offline QoS 0 subscription
    if (config.limits.queueQos0Messages) await this.storeStep(() => this.installQos0Queue())
    // replays the QoS 1 journal into the queues before anyone can connect
    await this.storeStep(() => this.durability.attach(this.aedes))
    // and, in a cluster, the journals of nodes that are gone, while running (src/cluster/journal.ts)
    if (cluster && this.durability.journal) {
      const journal = this.durability.journal
      attachCluster(cluster, this.aedes, () => this.durability.replay(this.aedes, journal), log)
    }
    wireStats(this.aedes, this.stats, c => this.contexts.get(c.conn as Duplex)?.listener.id)
    this.sys = new SysPublisher({
      aedes: this.aedes,
      stats: this.stats,
      log,
      intervalSeconds: config.sysInterval,
      // every node publishes its own tree: retained $SYS/broker/... values of several nodes would overwrite each other
      ...(cluster ? { prefix: `$SYS/nodes/${cluster.nodeId}/` } : {})
    })
    this.sys.start()
    registerObservabilityRoutes(this.router, {
      metrics: withBridgeMetrics(createMetrics({ aedes: () => this.aedes, stats: this.stats, connections: this.connections }), () => this.bridges),
      store: () => this.aedes ? storeOf(this.aedes) : undefined,
      closing: () => this.closing !== undefined
    })
    registerCsrRoutes(this.router, config, log)
    // admin API and web console, only on listeners with admin_enabled true
    registerAdminRoutes(this.router, this)

    for (const lc of config.listeners) {
      const listener = listenerFactories[lc.transport](lc, {
        onConnection: (stream, ctx, req) => this.onConnection(stream, ctx, req),
        admit: this.rateLimiter.enabled ? (remoteAddress, l) => this.admit(remoteAddress, l) : undefined,
        log,
        http: this.router.handle,
        maxPayload: config.limits.messageSizeLimit > 0 ? config.limits.messageSizeLimit + PUBLISH_OVERHEAD + 5 : undefined
      })
      const address = await listener.listen()
      this.listeners.push(listener)
      this.bound.push({ config: lc, address })
      this.connections.set(lc.id, 0)
      log.info({ listener: lc.id, address: address.address, port: address.port }, address.family === 'unix' ? `Opening ${lc.transport} listen socket on path ${address.address}.` : `Opening ${lc.transport} listen socket on port ${address.port}.`)
    }
    if (config.pidFile) {
      try {
        writeFileSync(config.pidFile, `${process.pid}\n`)
      } catch (err) {
        throw new BrokerError('PID_FILE', `Error: unable to write pid file ${config.pidFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, { cause: err })
      }
    }
  }

  /** A start-up step that reads the store: LevelDB corruption found while reading becomes STORE_CORRUPT. */
  private async storeStep<T> (step: () => Promise<T>): Promise<T> {
    try {
      return await step()
    } catch (err) {
      const corrupt = isCorruption(err)
      if (corrupt !== undefined) throw corruptStoreError(storePath(this.config.persistence.location, this.config.persistence.file), corrupt, err)
      throw err
    }
  }

  /** URL of the first listener with this transport (tests, embedders). */
  url (transport: ListenerConfig['transport'] = 'tcp'): string {
    const b = this.bound.find(x => x.config.transport === transport)
    if (!b) throw new Error(`no ${transport} listener`)
    const scheme = { tcp: 'mqtt', tls: 'mqtts', ws: 'ws', wss: 'wss', http: 'http', https: 'https' }[transport]
    const host = b.address.family === 'IPv6' ? `[${b.address.address === '::' ? '::1' : b.address.address}]` : (b.address.address === '0.0.0.0' ? '127.0.0.1' : b.address.address)
    return `${scheme}://${host}:${b.address.port}${transport === 'ws' || transport === 'wss' ? '/mqtt' : ''}`
  }

  /**
   * max_connection_rate, per source address: asked by every listener as soon as a TCP connection is accepted, before a
   * TLS handshake or an HTTP request costs anything; only the first refusal per address and second is logged.
   */
  private admit (remoteAddress: string | undefined, lc: ListenerConfig): boolean {
    const rate = this.rateLimiter.admit(remoteAddress)
    if (rate.ok) return true
    if (rate.first) this.log.warn({ listener: lc.id, remoteAddress }, `Connection refused: max_connection_rate (${this.config.limits.maxConnectionRate}/s) exceeded by ${remoteAddress ?? '?'}.`)
    return false
  }

  /** Outgoing packets, counted per written batch (one function for all connections). */
  private readonly countSent = (chunks: readonly Buffer[]): void => { this.stats.packetsOut += countPackets(chunks) }

  /**
   * One close listener for every connection (a stream closes once): its listener's count goes down, and a TCP or
   * TLS socket's bytes move to the closed totals.
   */
  private readonly connectionClosed = ((broker: Broker) => function connectionClosed (this: Duplex): void {
    const id = broker.contexts.get(this)?.listener.id
    if (id !== undefined) broker.connections.set(id, (broker.connections.get(id) ?? 1) - 1)
    broker.stats.socketClosed(this)
  })(this)

  /** Midge's rules on each packet a client sends, one function per listener for all its connections. */
  private readonly packetRulesOf = new WeakMap<ConnectionContext['listener'], PacketRule>()
  private packetRulesFor (lc: ConnectionContext['listener']): PacketRule {
    let rules = this.packetRulesOf.get(lc)
    if (rules !== undefined) return rules
    rules = composePacketRules([
      deliveryPacketRule,
      ...(lc.mountPoint !== undefined ? [mountPointRule(lc.mountPoint)] : []),
      this.shared.packetRule(lc.mountPoint),
      this.inboundRulesFor(lc)
    ])
    this.packetRulesOf.set(lc, rules)
    return rules
  }

  /** The inbound framer's options, one object per listener for all its connections. */
  private readonly framerOptionsOf = new WeakMap<ConnectionContext['listener'], FramerOptions>()
  private framerOptions (lc: ConnectionContext['listener']): FramerOptions {
    let opts = this.framerOptionsOf.get(lc)
    if (opts !== undefined) return opts
    const { limits } = this.config
    opts = {
      maxRemainingLength: limits.messageSizeLimit > 0 ? limits.messageSizeLimit + PUBLISH_OVERHEAD : MAX_REMAINING_LENGTH,
      acceptVersions: lc.acceptProtocolVersions,
      maxPackets: READ_BATCH_PACKETS,
      counter: this.stats.packetsIn,
      onViolation: (err: GuardError, stream: Duplex) => {
        this.log.warn({ listener: lc.id, remoteAddress: this.contexts.get(stream)?.remoteAddress, reason: err.reason }, `Bad packet, closing connection: ${err.message}.`)
        // [MQTT-3.1.2-2]
        if (err.reason === 'bad-protocol') stream.end(err.protocolLevel === 5 ? CONNACK_V5_UNSUPPORTED_PROTOCOL : CONNACK_UNACCEPTABLE_PROTOCOL)
        else stream.destroy()
      }
    }
    this.framerOptionsOf.set(lc, opts)
    return opts
  }

  /** The inbound rules (inbound.ts), one function per listener for all its connections. */
  private readonly inboundRulesOf = new WeakMap<ConnectionContext['listener'], InboundRules>()
  private inboundRulesFor (lc: ConnectionContext['listener']): InboundRules {
    let rules = this.inboundRulesOf.get(lc)
    if (rules !== undefined) return rules
    rules = inboundRules(this.config.limits.maxInflightMessages, lc.maxTopicAlias, (client, why) => {
      const remoteAddress = this.contexts.get(client.conn)?.remoteAddress
      this.log.warn({ clientId: client.id ?? undefined, listener: lc.id, remoteAddress }, `Client ${client.id ?? '?'} disconnected: ${why}.`)
    })
    this.inboundRulesOf.set(lc, rules)
    return rules
  }

  /**
   * Around every connection's writes (write-coalescer.ts), one object for all of them: the packets sent counted; a
   * v5 CONNACK made to say what this listener's config allows (connack.ts); topic aliases towards a v5 client that
   * accepts them (topic-alias-out.ts), decided when its CONNACK goes out; v5 acknowledgement codes aedes cannot
   * send (ack-codes.ts), while one waits. What a connection needs of it is kept in its ClientInfo.
   */
  private readonly writeHooks: WriteHooks = {
    onBatch: this.countSent,
    first: (stream, first) => {
      const client = clientOfConnection(stream)
      if (client === undefined) return undefined
      const info = this.hooks.clientInfo.get(client)
      const max = info?.topicAliasMaximum
      if (info !== undefined && max !== undefined && max > 0) info.aliases = new OutgoingTopicAliases(max, clientInternals(client).maximumPacketSize)
      const amend = this.hooks.connackAmendment(client)
      return amend === undefined ? undefined : amendConnack(first, amend)
    },
    each: {
      wanted: stream => {
        const client = clientOfConnection(stream)
        const info = client === undefined ? undefined : this.hooks.clientInfo.get(client)
        return info !== undefined && (info.aliases !== undefined || info.acks?.pending === true)
      },
      rewrite: (stream, batch) => {
        const info = this.hooks.clientInfo.get(clientOfConnection(stream)!)!
        const acked = info.acks?.pending === true ? info.acks.rewrite(batch) : batch
        return info.aliases === undefined ? acked : info.aliases.rewrite(acked)
      }
    }
  }

  private onConnection (stream: Duplex, ctx: ConnectionContext, req?: IncomingMessage): void {
    const { config, log } = this
    const lc = ctx.listener
    const count = this.connections.get(lc.id) ?? 0
    if (this.closing) { stream.destroy(); return }
    if (lc.maxConnections >= 0 && count >= lc.maxConnections) {
      if (this.refusalLog.first(lc.id)) log.warn({ listener: lc.id, remoteAddress: ctx.remoteAddress }, `Connection refused: max_connections (${lc.maxConnections}) reached.`)
      stream.destroy()
      return
    }
    this.connections.set(lc.id, count + 1)
    this.contexts.set(stream, ctx)
    stream.on('close', this.connectionClosed)
    // a TCP or TLS connection's stream is its socket: the close listener above tells the byte counts too
    const raw = (req?.socket ?? stream) as Socket
    trackConnection(this.stats, lc.id, raw, raw !== stream)
    if (config.log.connectionMessages) log.info({ listener: lc.id, remoteAddress: ctx.remoteAddress }, `New connection from ${ctx.remoteAddress ?? '?'}:${ctx.remotePort ?? '?'} on port ${lc.port}.`)
    // one step on stream.read in front of aedes: guard, packet counter, enhanced authentication where a plug-in has
    // it (MQTT 5 AUTH), and at most READ_BATCH_PACKETS packets per read for fairness under floods (inbound-framer.ts);
    // the enhanced-authentication stage writes below the coalescer, so it is built before it
    installInboundFramer(stream, this.framerOptions(lc), this.auth.hasEnhancedAuth(lc)
      ? framer => enhancedAuthStage(stream, framer, {
        ctx,
        start: req => this.auth.enhancedAuth(req),
        accepted: outcome => this.enhancedAuth.set(stream, outcome),
        disconnect: reasonCode => client.disconnect({ reasonCode }),
        timeoutMs: config.limits.connectTimeoutMs,
        sent: this.countSent,
        log
      })
      : undefined)
    // one write per connection per event-loop turn, not one per message; counts the packets sent
    coalesceWrites(stream, this.writeHooks)
    // aedes listens for the stream's errors from here on (clientError/connectionError), and leaves a no-op
    // listener when it closes the client, so an error never reaches the process; a listener of Midge's beside
    // them would cost an array of 20 slots per connection
    const client = this.aedes.handle(stream, req)
    leanParserList(client)
    hardenClient(client)
    // a server DISCONNECT is the last packet, and reaches the client before the connection closes
    lingerAfterServerDisconnect(client)
    // ahead of aedes on each packet the client sends: one listener for Midge's rules (packet-rules.ts)
    applyPacketRules(client, this.packetRulesFor(lc))
    if (lc.mountPoint !== undefined) mountStream(stream, lc.mountPoint)
    // backpressure: a connection's next packets are read once its last batch is handled (read-loop.ts)
    readOneBatchAtATime(client)
    // live delivery: duplicate filter, slow consumers, full queues (src/broker/delivery.ts)
    installDelivery(client, this.deliveryOptions)
  }

  private wireLogging (): void {
    const { log, config } = this
    this.aedes.on('unsubscribe', (topics: string[], c: Client) => this.subscriptionCounter.release(c, topics))
    // aedes bug: for a persistent session it stores every filter of a SUBSCRIBE, refused ones (SUBACK 0x80)
    // included, and restores them on reconnect, where a refused filter can take a granted one's slot under
    // max_subscriptions_per_client. Remove them again (test: 20-limits "is not restored with a persistent session").
    this.aedes.on('subscribe', (subs: Array<{ topic: string, qos: number }>, c: Client) => {
      if (c.clean) return
      const held = subscriptionsOf(c)
      // 0x80 and up: refused (v5 has several codes for it)
      const refused = subs.filter(s => s.qos >= 128 && held[s.topic] === undefined).map(s => s.topic)
      if (refused.length === 0) return
      const store = brokerInternals(this.aedes).persistence as { removeSubscriptions (c: Client, topics: string[]): Promise<unknown> }
      store.removeSubscriptions(c, refused).catch((err: Error) => log.warn({ clientId: c.id, err: err.message }, 'could not remove refused subscriptions from the store'))
    })
    const conn = config.log.connectionMessages
    const info = (c: Client) => this.hooks.clientInfo.get(c)
    this.aedes.on('client', (c: Client) => {
      if (!conn) return
      const i = info(c)
      log.info({ clientId: c.id, listener: i?.ctx.listener.id, remoteAddress: i?.ctx.remoteAddress, username: i?.username },
        `New client connected from ${i?.ctx.remoteAddress ?? '?'}:${i?.ctx.remotePort ?? '?'} as ${c.id} (p${c.version ?? 4}, c${c.clean ? 1 : 0}, k${i?.keepalive ?? 0}${i?.username !== undefined ? `, u'${i.username}'` : ''}).`)
    })
    this.aedes.on('clientDisconnect', (c: Client) => {
      if (conn) log.info({ clientId: c.id, listener: info(c)?.ctx.listener.id }, `Client ${c.id} disconnected.`)
    })
    this.aedes.on('keepaliveTimeout', (c: Client) => {
      log.info({ clientId: c.id }, `Client ${c.id} has exceeded timeout, disconnecting.`)
      // a v5 client is told why before the close [MQTT-3.14.2.1] (mosquitto 2.0.11 closes without a word); aedes
      // destroys the socket right after this event, so the DISCONNECT is written now, not at the end of the turn
      if (c.version === 5) {
        c.disconnect({ reasonCode: V5.KEEP_ALIVE_TIMEOUT })
        flushWrites(c.conn as Duplex)
      }
    })
    // aedes emits clientError once per failed packet of a read batch: a flooding client whose batch of thousands of
    // packets fails produced thousands of synchronous log lines and stalled the event loop for seconds (23-flood
    // QoS 2). Log the first error of a connection only.
    const reported = new WeakSet<Client>()
    this.aedes.on('clientError', (c: Client, err: Error) => {
      if (reported.has(c)) return
      reported.add(c)
      log.info({ clientId: c.id, listener: info(c)?.ctx.listener.id, err: err.message }, `Client ${c.id} error: ${err.message}.`)
    })
    this.aedes.on('connectionError', (c: Client, err: Error) => {
      if (reported.has(c)) return
      reported.add(c)
      log.info({ clientId: c.id ?? undefined, err: err.message }, `Connection error: ${err.message}.`)
    })
    if (config.log.types.includes('subscribe')) {
      this.aedes.on('subscribe', (subs, c: Client) => {
        for (const s of subs) log.info({ clientId: c.id, topic: displayFilter(s.topic), qos: s.qos }, `${c.id} ${s.qos} ${displayFilter(s.topic)}`)
      })
    }
    if (config.log.types.includes('unsubscribe')) {
      this.aedes.on('unsubscribe', (topics: string[], c: Client) => {
        for (const t of topics) log.info({ clientId: c.id, topic: displayFilter(t) }, `${c.id} ${displayFilter(t)}`)
      })
    }
  }

  /** SIGHUP: reload password and ACL files without dropping connections. */
  async reload (): Promise<void> {
    await this.auth?.reload()
    // TLS certificates too, as mosquitto does: renewals without a restart; broken new files keep the old ones
    for (const l of this.listeners) {
      if (!l.reloadTls) continue
      try {
        l.reloadTls()
        this.log.info({ listener: l.config.id }, 'TLS certificate reloaded')
      } catch (err) {
        this.log.error({ listener: l.config.id, err: (err as Error).message }, 'TLS reload failed; keeping the current certificate')
      }
    }
  }

  close (timeoutMs = 4_000): Promise<void> {
    this.closing ??= this.closeInternal(timeoutMs)
    return this.closing
  }

  private async closeInternal (timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'cut'>(resolve => { timer = setTimeout(() => resolve('cut'), timeoutMs).unref() })
    /** The step running now: what the deadline cut, if it comes first. */
    let step = 'stop accepting connections'
    const failed = (what: string) => (err: Error): void => { this.log.warn({ err: err.message, step: what }, `stopping: ${what} failed`) }
    const steps = async (): Promise<'done'> => {
      // a listener stops accepting at once, but its close resolves only when its last connection has ended, which
      // aedes.close does: awaited first, a connected client made every stop wait for the deadline and skip the store
      const listening = Promise.all(this.listeners.map(l => l.close().catch(failed(`closing listener ${l.config.id}`))))
      step = 'stop $SYS'
      await this.sys?.stop()
      step = 'close the bridges'
      await this.bridges?.close()
      step = 'close the clients'
      if (this.aedes) await new Promise<void>(resolve => this.aedes.close(() => resolve()))
      step = 'close the listeners'
      await listening
      step = 'flush the journal'
      await this.durability?.close().catch(failed(step))
      step = 'flush and close the store'
      await this.persistence?.close().catch((err: Error) => this.log.error({ err: err.message }, 'closing the store failed'))
      step = 'close the auth backends'
      await this.auth?.close().catch(failed(step))
      return 'done'
    }
    const outcome = await Promise.race([steps(), deadline])
    clearTimeout(timer)
    if (outcome === 'cut') this.log.warn({ step, timeoutMs }, `stop deadline (${timeoutMs} ms) reached while trying to ${step}; the later steps were skipped`)
    if (this.config.pidFile && this.bound.length > 0) rmSync(this.config.pidFile, { force: true })
  }
}
