/**
 * The one place Midge reaches into aedes beyond its documented API (options, hooks, events, `handle`, `publish`,
 * `subscribe`). aedes exposes no seam for per-connection delivery, read batching, packet identifiers or the client
 * table, and Midge needs all four (delivery.ts, read-loop.ts, durability.ts, stats). Every such field is named and
 * typed here, and `checkAedes` verifies at start-up that the aedes in node_modules still has each of them: an
 * upgrade that renames one stops the broker with a message naming the field, instead of silently losing
 * backpressure or the outgoing window.
 *
 * aedes is pinned to exactly AEDES_VERSION in package.json for the same reason.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { Duplex, type Readable } from 'node:stream'
import type { Aedes, Client } from 'aedes'
import { BrokerError } from '../errors.js'

export const AEDES_VERSION = '2.0.0-beta.1'

export type Deliver = (packet: DeliverPacket, cb: (err?: Error | null) => void) => void
export interface DeliverPacket { topic: string, qos: number, brokerId?: string | null, brokerCounter?: number, messageId?: number, properties?: Record<string, unknown> }
export type AuthorizeForward = (client: unknown, packet: DeliverPacket) => DeliverPacket | null | undefined

/** A packet as aedes' parser (mqtt-packet) emits it, with the fields Midge reads ahead of aedes. */
export interface ParsedPacket { cmd: string, messageId?: number, protocolVersion?: number, properties?: { receiveMaximum?: number, topicAlias?: number } }

/** A subscription as aedes keeps it on the client: QoS plus, for v5, the subscription options and identifier. */
export interface HeldSubscription { qos: number, nl?: boolean, rap?: boolean, rh?: number, si?: number }

export interface BrokerInternals {
  id: string
  /** set as soon as `close()` starts */
  closed: boolean
  /** aedes' per-broker message counter (brokerCounter); Midge assigns it in arrival order (durability.ts) */
  counter: number
  clients: Record<string, Client>
  authorizeForward: AuthorizeForward
  persistence: unknown
  on: (event: 'connackSent', fn: (packet: unknown, client: object) => void) => void
}

export interface ClientInternals {
  id: string | null
  version: number | null
  /** v5: the Receive Maximum the client announced (aedes: 65535 when it announced none) */
  receiveMaximum?: number
  /** v5: the Maximum Packet Size the client announced, if any */
  maximumPacketSize?: number
  once: (event: 'connected', fn: () => void) => void
  clean: boolean
  closed: boolean
  connected: boolean
  connecting: boolean
  connackSent: boolean
  will?: unknown
  conn: Duplex
  deliverQoS: Deliver
  deliver0: Deliver
  /** v5: writes a DISCONNECT with the reason code, then closes; aedes calls it for takeover, shutdown, 0x93-0x95 */
  disconnect: (opts?: { reasonCode?: number }, done?: () => void) => void
  duplicates: Record<string, number>
  subscriptions: Record<string, HeldSubscription>
  broker: BrokerInternals
  /** the next outgoing packet identifier aedes would use */
  _nextId: number
  /** packets of this client's last read still being handled (read-loop.ts) */
  _parsingBatch: number
  /** reads and parses the next batch (aedes' 'readable' listener) */
  _nextBatch: () => void
  _parser: {
    prependListener: (event: 'packet', fn: (p: ParsedPacket) => void) => void
    removeListener: (event: 'packet', fn: (p: ParsedPacket) => void) => void
    /** mqtt-packet keeps the CONNECT here once parsed: the protocol version, known while later packets of the same read are parsed (aedes sets `version` only when it handles the CONNECT) */
    settings: { protocolVersion?: number }
    /** the bytes read and not parsed yet */
    _list: { length: number, append: (buf: Buffer) => unknown }
  }
}

export function brokerInternals (aedes: Aedes): BrokerInternals {
  return aedes as unknown as BrokerInternals
}

export function clientInternals (client: Client | object): ClientInternals {
  return client as unknown as ClientInternals
}

/** The aedes client of a connection: aedes sets `conn.client` when it handles the stream (lib/client.js). */
export function clientOfConnection (conn: Duplex): Client | undefined {
  return (conn as Duplex & { client?: Client }).client
}

/**
 * The aedes client whose parser emits a packet: aedes sets `parser.client` (lib/client.js). A 'packet' listener
 * called with the parser as `this` finds its connection here, so one function serves every connection.
 */
export function clientOfParser (parser: object): ClientInternals {
  return (parser as { client: ClientInternals }).client
}

/** aedes' own `disconnect`, a method of its Client class, for a client whose `disconnect` Midge replaced. */
export function disconnectAsAedes (client: ClientInternals, opts?: { reasonCode?: number }, done?: () => void): void {
  (Object.getPrototypeOf(client) as Pick<ClientInternals, 'disconnect'>).disconnect.call(client, opts, done)
}

/** Connected clients by id (aedes' own table). */
export function connectedClients (aedes: Aedes): Record<string, Client> {
  return brokerInternals(aedes).clients
}

/** The subscriptions aedes holds for a connected client, by topic filter. */
export function subscriptionsOf (client: Client | object): Record<string, HeldSubscription> {
  return clientInternals(client).subscriptions
}

/** A will as aedes stores and publishes it (aedes-persistence `putWill`/`getWill`). */
export interface StoredWill { topic: string, payload: Buffer, qos: 0 | 1 | 2, retain: boolean, properties?: Record<string, unknown>, brokerId?: string, clientId?: string }

/**
 * Calls `onScheduled` whenever aedes arms a delayed will (MQTT 5 Will Delay Interval; aedes' `scheduleWill`, with
 * the delay already capped by the session expiry), and `onPublished` whenever it publishes a client's will
 * (`publishWill`). aedes keeps the delay timer in memory only (will-delay.ts keeps it across restarts).
 */
export function watchWills (aedes: Aedes, onScheduled: (clientId: string, delaySeconds: number) => void, onPublished: (clientId: string) => void): void {
  const b = aedes as unknown as {
    scheduleWill: (client: { id: string }, will: unknown, delaySeconds: number) => void
    publishWill: (client: { id: string }, will: unknown) => void
  }
  const schedule = b.scheduleWill
  const publish = b.publishWill
  b.scheduleWill = function (client, will, delaySeconds) {
    onScheduled(client.id, delaySeconds)
    schedule.call(this, client, will, delaySeconds)
  }
  b.publishWill = function (client, will) {
    onPublished(client.id)
    publish.call(this, client, will)
  }
}

/** The protocol version of the client's CONNECT, from the moment it is parsed. */
export function parsedProtocolVersion (client: Client | object): number | undefined {
  const c = clientInternals(client)
  return c.version ?? c._parser.settings.protocolVersion
}

/** Takes the client's next outgoing packet identifier from aedes' own counter, so the two never collide. */
export function takePacketId (client: ClientInternals): number {
  const id = client._nextId
  client._nextId = id >= 65535 ? 1 : id + 1
  return id
}

/**
 * Puts `filter`, behind `handler`, in place of the client's duplicate table. aedes' `dedupe` (lib/client.js) reads
 * `duplicates[brokerId]` and writes the counter back, synchronously inside deliverQoS/deliver0, and uses the table
 * nowhere else: the handler answers those two accesses from the filter (delivery/duplicate-filter.ts).
 */
export function interceptDuplicates<T extends object> (client: ClientInternals, filter: T, handler: ProxyHandler<T>): void {
  client.duplicates = new Proxy(filter, handler) as unknown as ClientInternals['duplicates']
}

/** The pair of functions that replaces a client's `deliverQoS` and `deliver0`. */
export interface DeliveryPair { deliverQoS: Deliver, deliver0: Deliver }
/** `connect`: the CONNECT being parsed, when the layer is built ahead of aedes handling it. */
export type DeliveryBuilder = (client: ClientInternals, origQoS: Deliver, orig0: Deliver, connect?: ParsedPacket) => DeliveryPair

interface Unbuilt { client: ClientInternals, origQoS: Deliver, orig0: Deliver, build: DeliveryBuilder }
/** Clients whose delivery functions are not built yet, by their parser: aedes' own pair and the builder. */
const unbuilt = new WeakMap<object, Unbuilt>()

/** Builds the client's delivery functions now, if they are not built yet. */
export function buildDelivery (client: object, connect?: ParsedPacket): void {
  const c = clientInternals(client)
  const u = unbuilt.get(c._parser)
  if (u === undefined) return
  unbuilt.delete(c._parser)
  const pair = u.build(c, u.origQoS, u.orig0, connect)
  c.deliverQoS = pair.deliverQoS
  c.deliver0 = pair.deliver0
}

// One set of functions for every client (an idle connection carries no closures of its own). aedes calls these
// as methods of the client when it delivers; its subscribe handler keeps the function it reads and calls it
// without the client, so the functions are built before aedes handles a SUBSCRIBE or restores a session's
// subscriptions (a CONNECT without clean session): `buildBeforeSubscribing` is the first of the connection's packet
// rules, ahead of aedes on the parser's 'packet' event.
function deliverQoSUnbuilt (this: ClientInternals, packet: DeliverPacket, cb: (err?: Error | null) => void): void {
  buildDelivery(this)
  this.deliverQoS(packet, cb)
}
function deliver0Unbuilt (this: ClientInternals, packet: DeliverPacket, cb: (err?: Error | null) => void): void {
  buildDelivery(this)
  this.deliver0(packet, cb)
}
/** A packet rule (called with the client's parser as `this`): builds the delivery functions before they are kept. */
export function buildBeforeSubscribing (this: object, packet: ParsedPacket & { clean?: boolean }): void {
  if (packet.cmd === 'subscribe' || (packet.cmd === 'connect' && packet.clean === false)) {
    const u = unbuilt.get(this)
    if (u !== undefined) buildDelivery(u.client, packet.cmd === 'connect' ? packet : undefined)
  }
}

/**
 * Replaces the client's `deliverQoS` and `deliver0` with what `build` returns, built on first use: when aedes
 * first delivers to the client, before it handles its first SUBSCRIBE or restores its session's subscriptions (the
 * packet rule `buildBeforeSubscribing`, which must run on the client's packets), or when `buildDelivery` is called.
 * Most connected devices never subscribe; their connection then holds none of it.
 */
export function deliverThrough (client: Client, build: DeliveryBuilder): void {
  const c = clientInternals(client)
  unbuilt.set(c._parser, { client: c, origQoS: c.deliverQoS, orig0: c.deliver0, build })
  c.deliverQoS = deliverQoSUnbuilt
  c.deliver0 = deliver0Unbuilt
}

/** A rule on each packet a client sends, called with the client's parser as `this` before aedes handles it. */
export type PacketRule = (this: object, p: ParsedPacket) => void

/**
 * Puts the rules ahead of aedes on the client's parser as one listener (called in the order given): a third
 * listener on the parser's 'packet' event would turn its list into an array of 20 slots, 176 bytes per connection.
 */
export function applyPacketRules (client: Client, rules: PacketRule): void {
  clientInternals(client)._parser.prependListener('packet', rules)
}

/**
 * mqtt-packet's parser keeps the bytes it has not parsed yet in `bl()`, a BufferListStream: a Duplex, with its
 * readable and writable state and event emitter (about 0.7 KiB per connection measured in a heap snapshot), used
 * only as a list. The plain BufferList of the same `bl` package has the same methods without the stream, and is
 * the one taken from the `bl` that mqtt-packet itself loads.
 */
const PlainBufferList = createRequire(createRequire(import.meta.url).resolve('mqtt-packet'))('bl/BufferList.js') as new () => ClientInternals['_parser']['_list']

/** Gives the client's parser a plain list for its unparsed bytes (before anything is read). */
export function leanParserList (client: Client): void {
  const parser = clientInternals(client)._parser
  if (parser._list.length === 0) parser._list = new PlainBufferList()
}

/**
 * Refuses a v5 client's subscription with SUBACK 0x80 (Unspecified error) where aedes would say 0x87 (Not
 * authorized): aedes picks the code by the client's protocol version when `refuse` (the authorizeSubscribe
 * callback, given no subscription) runs, synchronously, so the version reads as 3.1.1 for that call only.
 */
export function refuseUnspecified (client: Client | object, refuse: () => void): void {
  const c = clientInternals(client)
  const version = c.version
  c.version = 4
  try {
    refuse()
  } finally {
    c.version = version
  }
}

/**
 * aedes 2.0.0-beta.1 keys its client table, each client's subscriptions and its QoS 2 duplicate filter with
 * plain objects, so wire strings such as `constructor` or `toString` read back as inherited functions: a CONNECT
 * with client id `constructor` makes `registerClient` call `.disconnect` on `Object` and the process dies
 * (aedes 1.2.0 had fixed this with null-prototype objects; the beta branched before that fix). Midge gives aedes
 * null-prototype tables instead. Test: 01-connect "client ids that name Object.prototype members".
 *
 * A client's duplicate table is left as aedes made it: it is keyed by broker ids, never by a client's strings,
 * and the delivery layer puts its own filter in its place (`interceptDuplicates`) before aedes first reads it. An
 * idle connection so keeps aedes' empty object, not a null-prototype dictionary (184 bytes of heap each).
 */
export function hardenBroker (aedes: Aedes): void {
  const b = aedes as unknown as { clients: Record<string, unknown>, brokers: Record<string, unknown> }
  b.clients = Object.assign(Object.create(null) as Record<string, unknown>, b.clients)
  b.brokers = Object.assign(Object.create(null) as Record<string, unknown>, b.brokers)
}

export function hardenClient (client: Client): void {
  const c = client as unknown as { subscriptions: object }
  c.subscriptions = Object.assign(Object.create(null) as object, c.subscriptions)
}

/**
 * aedes sends a new subscription its retained messages (lib/handlers/subscribe.js `sendRetained`) through the
 * client's `deliverQoS`, one at a time: its stream hands over the next message only when the callback of the last
 * one runs. It sets `brokerId = null` on each (so that its duplicate filter lets it through); every other delivery
 * carries the broker id it was published under.
 */
export function isRetainedOnSubscribe (packet: DeliverPacket): boolean {
  return packet.brokerId === null
}
const SUBSCRIBE_HANDLER = join(dirname(createRequire(import.meta.url).resolve('aedes')), 'lib', 'handlers', 'subscribe.js')
const RETAINED_ON_SUBSCRIBE = ['newPacket.brokerId = null', 'client.deliverQoS(newPacket, cb)']

/**
 * aedes reads a client's stored queue (the store's `outgoingStream`) only as the first argument of Node's
 * `stream.pipeline` (lib/handlers/connect.js `emptyQueue` on every CONNECT, lib/client.js `emptyOutgoingQueue`),
 * which takes any iterable. For a client with nothing stored, an empty array ends that pipeline without a source
 * stream, its `pipe()` and its end-of-stream listeners: the garbage of every clean CONNECT (docs/performance.md,
 * "Fourth round"). Midge's own readers of the queue use `for await`, which takes it too.
 */
export const EMPTY_STORED_QUEUE = Object.freeze([]) as unknown as Readable

export function isEmptyStoredQueue (queue: unknown): boolean {
  return queue === EMPTY_STORED_QUEUE
}
const AEDES_LIB = join(dirname(createRequire(import.meta.url).resolve('aedes')), 'lib')
/** Every place aedes reads a stored queue, each straight into `pipeline`. */
const STORED_QUEUE_READERS: Array<[string, string]> = [
  ['handlers/connect.js', 'const outgoing = persistence.outgoingStream(client)\n\n  client.resume()\n\n  pipeline(\n    outgoing,'],
  ['client.js', 'pipeline(\n      persistence.outgoingStream(client),']
]

/**
 * Start-up self-check: the running aedes is the pinned one and still has every internal Midge uses. A client is
 * made over an in-memory stream that is closed at once (it never connects, so no event reaches Midge's wiring).
 */
export function checkAedes (aedes: Aedes): void {
  const problems: string[] = []
  const version = (aedes as unknown as { version?: string }).version
  if (version !== AEDES_VERSION) problems.push(`version ${version} (Midge is built for ${AEDES_VERSION})`)
  const b = aedes as unknown as Record<string, unknown>
  const broker: Array<[string, string]> = [['clients', 'object'], ['counter', 'number'], ['authorizeForward', 'function'], ['persistence', 'object'], ['id', 'string'], ['scheduleWill', 'function'], ['publishWill', 'function'], ['closed', 'boolean']]
  for (const [field, type] of broker) {
    // eslint-disable-next-line valid-typeof -- the expected typeof comes from the table above
    if (typeof b[field] !== type) problems.push(`broker.${field} is not a ${type}`)
  }
  const conn = new Duplex({ read () {}, write (_c, _e, cb) { cb() } })
  const client = aedes.handle(conn as never) as unknown as Record<string, unknown>
  const fields: Array<[string, string]> = [
    ['_nextId', 'number'], ['_parsingBatch', 'number'], ['_nextBatch', 'function'], ['_parser', 'object'],
    ['deliverQoS', 'function'], ['deliver0', 'function'], ['subscriptions', 'object'], ['duplicates', 'object'],
    ['connackSent', 'boolean'], ['connected', 'boolean'], ['broker', 'object'], ['disconnect', 'function']
  ]
  for (const [field, type] of fields) {
    // eslint-disable-next-line valid-typeof -- the expected typeof comes from the table above
    if (typeof client[field] !== type) problems.push(`client.${field} is not a ${type}`)
  }
  const list = (client._parser as { _list?: Record<string, unknown> } | undefined)?._list
  if (typeof list?.append !== 'function' || typeof list.consume !== 'function') problems.push('client._parser._list is not a BufferList')
  else if (typeof (PlainBufferList.prototype as unknown as Record<string, unknown>).readUInt8 !== 'function') problems.push('bl/BufferList has no readUInt8')
  if (typeof (client._parser as { prependListener?: unknown } | undefined)?.prependListener !== 'function') problems.push('client._parser has no prependListener')
  if (typeof (client._parser as { settings?: unknown } | undefined)?.settings !== 'object') problems.push('client._parser has no settings')
  if (typeof (client._parser as { removeListener?: unknown } | undefined)?.removeListener !== 'function') problems.push('client._parser has no removeListener')
  // one listener function for every connection finds its client through these (read-loop.ts, inbound.ts)
  if ((conn as unknown as { client?: unknown }).client !== client) problems.push('conn.client is not the aedes client')
  if ((client._parser as { client?: unknown } | undefined)?.client !== client) problems.push('client._parser.client is not the aedes client')
  // server-disconnect.ts replaces a client's disconnect with one shared function that calls the class's own
  if (Object.hasOwn(client, 'disconnect') || typeof (Object.getPrototypeOf(client) as { disconnect?: unknown }).disconnect !== 'function') problems.push('client.disconnect is not a method of the Client class')
  // interceptDuplicates replaces the table: it must be the client's own, writable field
  if (Object.getOwnPropertyDescriptor(client, 'duplicates')?.writable !== true) problems.push('client.duplicates is not a writable field')
  conn.destroy()
  let handler = ''
  try { handler = readFileSync(SUBSCRIBE_HANDLER, 'utf8') } catch (err) { problems.push(`cannot read ${SUBSCRIBE_HANDLER}: ${(err as Error).message}`) }
  for (const line of RETAINED_ON_SUBSCRIBE) if (handler !== '' && !handler.includes(line)) problems.push(`lib/handlers/subscribe.js no longer has \`${line}\` (retained messages on subscribe)`)
  for (const [file, use] of STORED_QUEUE_READERS) {
    let source = ''
    try { source = readFileSync(join(AEDES_LIB, file), 'utf8') } catch (err) { problems.push(`cannot read ${file}: ${(err as Error).message}`) }
    if (source !== '' && (!source.includes(use) || source.split('outgoingStream(').length !== 2)) problems.push(`lib/${file} no longer reads the stored queue only through pipeline (EMPTY_STORED_QUEUE)`)
  }
  if (problems.length > 0) {
    throw new BrokerError('AEDES_MISMATCH', `Error: the installed aedes does not match what Midge was built for: ${problems.join('; ')}. Run \`npm ci\` to install the pinned aedes ${AEDES_VERSION}.`)
  }
}
