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
import { Duplex } from 'node:stream'
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
  }
}

export function brokerInternals (aedes: Aedes): BrokerInternals {
  return aedes as unknown as BrokerInternals
}

export function clientInternals (client: Client | object): ClientInternals {
  return client as unknown as ClientInternals
}

/** Connected clients by id (aedes' own table). */
export function connectedClients (aedes: Aedes): Record<string, Client> {
  return brokerInternals(aedes).clients
}

/** The subscriptions aedes holds for a connected client, by topic filter. */
export function subscriptionsOf (client: Client | object): Record<string, HeldSubscription> {
  return clientInternals(client).subscriptions
}

/** Takes the client's next outgoing packet identifier from aedes' own counter, so the two never collide. */
export function takePacketId (client: ClientInternals): number {
  const id = client._nextId
  client._nextId = id >= 65535 ? 1 : id + 1
  return id
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
 */
export function hardenBroker (aedes: Aedes): void {
  const b = aedes as unknown as { clients: Record<string, unknown>, brokers: Record<string, unknown> }
  b.clients = Object.assign(Object.create(null) as Record<string, unknown>, b.clients)
  b.brokers = Object.assign(Object.create(null) as Record<string, unknown>, b.brokers)
}

export function hardenClient (client: Client): void {
  const c = client as unknown as { subscriptions: object, duplicates: object }
  c.subscriptions = Object.assign(Object.create(null) as object, c.subscriptions)
  c.duplicates = Object.assign(Object.create(null) as object, c.duplicates)
}

/**
 * Start-up self-check: the running aedes is the pinned one and still has every internal Midge uses. A client is
 * made over an in-memory stream that is closed at once (it never connects, so no event reaches Midge's wiring).
 */
export function checkAedes (aedes: Aedes): void {
  const problems: string[] = []
  const version = (aedes as unknown as { version?: string }).version
  if (version !== AEDES_VERSION) problems.push(`version ${version} (Midge is built for ${AEDES_VERSION})`)
  const b = aedes as unknown as Record<string, unknown>
  const broker: Array<[string, string]> = [['clients', 'object'], ['counter', 'number'], ['authorizeForward', 'function'], ['persistence', 'object'], ['id', 'string'], ['closed', 'boolean']]
  for (const [field, type] of broker) {
    // eslint-disable-next-line valid-typeof -- the expected typeof comes from the table above
    if (typeof b[field] !== type) problems.push(`broker.${field} is not a ${type}`)
  }
  const conn = new Duplex({ read () {}, write (_c, _e, cb) { cb() } })
  const client = aedes.handle(conn as never) as unknown as Record<string, unknown>
  const fields: Array<[string, string]> = [
    ['_nextId', 'number'], ['_parsingBatch', 'number'], ['_nextBatch', 'function'], ['_parser', 'object'],
    ['deliverQoS', 'function'], ['deliver0', 'function'], ['subscriptions', 'object'], ['duplicates', 'object'],
    ['connackSent', 'boolean'], ['broker', 'object'], ['disconnect', 'function']
  ]
  for (const [field, type] of fields) {
    // eslint-disable-next-line valid-typeof -- the expected typeof comes from the table above
    if (typeof client[field] !== type) problems.push(`client.${field} is not a ${type}`)
  }
  if (typeof (client._parser as { prependListener?: unknown } | undefined)?.prependListener !== 'function') problems.push('client._parser has no prependListener')
  if (typeof (client._parser as { removeListener?: unknown } | undefined)?.removeListener !== 'function') problems.push('client._parser has no removeListener')
  conn.destroy()
  if (problems.length > 0) {
    throw new BrokerError('AEDES_MISMATCH', `Error: the installed aedes does not match what Midge was built for: ${problems.join('; ')}. Run \`npm ci\` to install the pinned aedes ${AEDES_VERSION}.`)
  }
}
