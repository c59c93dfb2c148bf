/**
 * aedes-persistence-level's LevelDB layout, in one place: its key families, how a client id and a packet id sit in
 * a key, its value encoding (msgpack-lite) and its topic matching options. Midge reads and writes that layout
 * beside the store itself (the session index, queue counting, session expiry, the retained cache, the outgoing
 * queue's writes), so none of it is documented interface: `checkLevelLayout` reads the installed store's source
 * at start-up and stops Midge with one line if any of it changed, before anything is read or written.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { BrokerError } from '../errors.js'

/** The version the layout below was read from (package.json pins it exactly). */
export const LEVEL_STORE_VERSION = '9.2.0'

/** Key families; each key is `<family><encodeURIComponent(client id)>:...`, except retained (`retained:<topic>`). */
export const RETAINED = 'retained:'
export const SUBSCRIPTIONS = 'subscriptions:'
export const OUTGOING = 'outgoing:'
export const OUTGOING_ID = 'outgoing-id:'
export const INCOMING = 'incoming:'
export const WILL = 'will:'
/** The families that hold a client's session state (its will aside), as session expiry deletes them. */
export const CLIENT_FAMILIES = [SUBSCRIPTIONS, OUTGOING, OUTGOING_ID, INCOMING] as const

/** Every key under `prefix` (which ends with ':'): ';' is the byte after ':', so nothing sorts between them. */
export function range (prefix: string): { gte: string, lt: string } {
  return { gte: prefix, lt: `${prefix.slice(0, -1)};` }
}

/** Every key of one client in one family. */
export function clientRange (family: string, clientId: string): { gte: string, lt: string } {
  return range(`${family}${encodeURIComponent(clientId)}:`)
}

/** The client id of a key of a per-client family (the part up to the next ':'). */
export function clientOfKey (family: string, key: string): string {
  const end = key.indexOf(':', family.length)
  return decodeURIComponent(key.slice(family.length, end < 0 ? undefined : end))
}

/** Packet ids and broker counters are zero-padded to 16 digits, so that keys sort in queue order. */
export function padId (id: number | undefined | null): string | undefined {
  return id?.toString().padStart(16, '0')
}

/** A client's will. */
export function willKey (clientId: string): string {
  return `${WILL}${encodeURIComponent(clientId)}`
}

/** A message in a client's stored queue. */
export function outgoingKey (clientId: string, brokerId: string | undefined, brokerCounter: number | undefined): string {
  return `${OUTGOING}${encodeURIComponent(clientId)}:${brokerId}:${padId(brokerCounter)}`
}

/** The same message under the packet id it was sent with. */
export function outgoingIdKey (clientId: string, messageId: number | undefined | null): string {
  return `${OUTGOING_ID}${encodeURIComponent(clientId)}:${padId(messageId)}`
}

// the msgpack and qlobber that the store itself loads, so that values and matching are its own
const storeRequire = createRequire(createRequire(import.meta.url).resolve('aedes-persistence-level'))

export interface Codec { encode (v: unknown): Buffer, decode (b: Buffer): unknown }
/** The store's value encoding. */
export const msgpack = storeRequire('msgpack-lite') as Codec

/** A QoS 2 message received, between PUBREC and PUBREL. */
export function incomingKey (clientId: string, messageId: number | undefined | null): string {
  return `${INCOMING}${encodeURIComponent(clientId)}:${padId(messageId)}`
}

/** A message as the store queues it for a client (`outgoingEnqueue`: aedes-packet's copy of the packet). */
const AedesPacket = storeRequire('aedes-packet') as new (original: object) => object
export function queuedValue (packet: object): object {
  return new AedesPacket(packet)
}

export interface TopicSet { add (pattern: string): void, test (topic: string): boolean }
export const { QlobberTrue } = storeRequire('qlobber') as { QlobberTrue: new (options: object) => TopicSet }
/** The store's topic matching options. */
export const QLOBBER_OPTIONS = { wildcard_one: '+', wildcard_some: '#', separator: '/', match_empty_levels: true } as const

/** Lines of the store's source that the layout above restates; one missing means the layout may have moved. */
/* eslint-disable no-template-curly-in-string -- lines of the store's JavaScript, template literals as written there */
const EXPECTED_SOURCE = [
  "const msgpack = require('msgpack-lite')",
  "const Packet = require('aedes-packet')",
  'await this.#dbPut(key, new Packet(packet))',
  'const prekey = outgoingKey(client.id, resPacket.brokerId, resPacket.brokerCounter)',
  'return `${incomingByClientKey(clientId)}${padId(messageId)}`',
  'newp.messageId = packet.messageId',
  `const RETAINED = '${RETAINED}'`,
  `const SUBSCRIPTIONS = '${SUBSCRIPTIONS}'`,
  `const OUTGOING = '${OUTGOING}'`,
  `const OUTGOINGID = '${OUTGOING_ID}'`,
  `const INCOMING = '${INCOMING}'`,
  `const WILL = '${WILL}'`,
  "wildcard_one: '+'",
  "wildcard_some: '#'",
  'match_empty_levels: true',
  "return id?.toString().padStart(16, '0')",
  'return `${OUTGOING}${encodeURIComponent(clientId)}:`',
  'return `${outgoingByClientKey(clientId)}${brokerId}:${padId(brokerCounter)}`',
  'return `${OUTGOINGID}${encodeURIComponent(clientId)}:${padId(messageId)}`',
  'return `${INCOMING}${encodeURIComponent(clientId)}:`',
  'return `${WILL}${encodeURIComponent(clientId)}`',
  'return `${SUBSCRIPTIONS}${encodeURIComponent(clientId)}:`',
  'return `${subByClientKey(sub.clientId)}${sub.topic}`'
]
/* eslint-enable no-template-curly-in-string */

/** What differs between the installed store and the layout above (empty: nothing). */
export function levelLayoutProblems (source?: string, version?: string): string[] {
  const require = createRequire(import.meta.url)
  const dir = require.resolve('aedes-persistence-level/package.json').replace(/package\.json$/, '')
  const v = version ?? (JSON.parse(readFileSync(`${dir}package.json`, 'utf8')) as { version: string }).version
  const text = source ?? readFileSync(`${dir}asyncPersistence.js`, 'utf8')
  const problems: string[] = []
  if (v !== LEVEL_STORE_VERSION) problems.push(`version ${v}, not ${LEVEL_STORE_VERSION}`)
  for (const line of EXPECTED_SOURCE) if (!text.includes(line)) problems.push(`asyncPersistence.js no longer has \`${line}\``)
  return problems
}

/** Stops start-up with one line if the installed aedes-persistence-level is not the layout Midge reads and writes. */
export function checkLevelLayout (): void {
  const problems = levelLayoutProblems()
  if (problems.length === 0) return
  throw new BrokerError('AEDES_MISMATCH', `Error: the installed aedes-persistence-level does not match what Midge was built for: ${problems.join('; ')}. Run \`npm ci\` to install the pinned aedes-persistence-level ${LEVEL_STORE_VERSION}.`)
}
