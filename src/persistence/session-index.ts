/**
 * Which client ids have anything in the LevelDB store, so that a session with nothing stored costs no store read.
 *
 * aedes asks the store on every CONNECT, clean session or not: the stored subscriptions (`cleanSubscriptions` or
 * `subscriptionsByClient`, a LevelDB iterator), the will (`delWill`, a get), the offline queue (`outgoingStream`,
 * another iterator); a v5 session that ends does the same again, and every PUBACK/PUBCOMP from a clean client
 * looks up a stored message id (`outgoingClearMessageId`, a get). Profiled (`node --cpu-prof`, 10,000 clean
 * connects with `persistence true`): LevelDB iterators and gets were 30% of the broker's busy time, and the
 * connects took 10.1 s against 5.1 s in memory.
 *
 * The index is read from the store's keys at start-up (`setup`, before aedes reads anything) and grows with every
 * write aedes makes through this wrapper (subscriptions of persistent sessions, wills, queued messages). It is a
 * superset: an id stays in it until the next start, so a lookup it lets through finds what it found before, and
 * one it answers itself would have found nothing. Only persistent sessions and clients with a will are in it
 * (aedes stores no subscription of a clean session).
 *
 * QoS 2: aedes looks up every new QoS 2 PUBLISH with `incomingGetPacket` (a message id it holds means a resent
 * PUBLISH) and nearly always finds nothing: in a profile of durable-q2-p10 (`node --cpu-prof`, group commit in
 * place) those LevelDB gets were 11.4% of the busy time. The message ids stored per client (between PUBREC and
 * PUBREL) are kept here exactly: added when aedes stores one, removed when it deletes it, read from the keys at
 * start-up. A lookup of any other id is refused as aedes-persistence-level refuses it, and a clean start of a client
 * with none (`cleanIncoming`, a LevelDB range delete) does nothing.
 */
import { Readable } from 'node:stream'
import type { ClassicLevel } from 'classic-level'

type AnyFn = (...args: unknown[]) => unknown
interface ClientLike { id: string }

/** aedes-persistence-level's key prefixes; the client id follows, encodeURIComponent'd, up to the next ':'. */
const SUBSCRIPTIONS = 'subscriptions:'
const WILL = 'will:'
const OUTGOING = 'outgoing:'
const OUTGOING_ID = 'outgoing-id:'
const INCOMING = 'incoming:'

export interface SessionIndex {
  subscriptions: Set<string>
  wills: Set<string>
  outgoing: Set<string>
  /** QoS 2 message ids stored per client (PUBREC sent, PUBREL not handled yet). */
  incoming: Map<string, Set<number>>
}

/** The range of every key under `prefix` (which ends with ':'): ';' is the byte after ':'. */
function range (prefix: string): { gte: string, lt: string } {
  return { gte: prefix, lt: `${prefix.slice(0, -1)};` }
}

async function loadIds (db: ClassicLevel<string, Buffer>, prefix: string, into: Set<string>, wholeRest: boolean): Promise<void> {
  for await (const key of db.keys(range(prefix))) {
    const end = wholeRest ? key.length : key.indexOf(':', prefix.length)
    into.add(decodeURIComponent(key.slice(prefix.length, end < 0 ? key.length : end)))
  }
}

const newIndex = (): SessionIndex => ({ subscriptions: new Set(), wills: new Set(), outgoing: new Set(), incoming: new Map() })

/** Reads the ids that have subscriptions, a will, queued messages or QoS 2 messages in the store. */
export async function loadSessionIndex (db: ClassicLevel<string, Buffer>): Promise<SessionIndex> {
  const index = newIndex()
  await loadIds(db, SUBSCRIPTIONS, index.subscriptions, false)
  await loadIds(db, WILL, index.wills, true)
  await loadIds(db, OUTGOING, index.outgoing, false)
  await loadIds(db, OUTGOING_ID, index.outgoing, false)
  // `incoming:<client>:<message id, zero-padded>`
  for await (const key of db.keys(range(INCOMING))) {
    const end = key.lastIndexOf(':')
    addIncoming(index, decodeURIComponent(key.slice(INCOMING.length, end)), Number(key.slice(end + 1)))
  }
  return index
}

function addIncoming (index: SessionIndex, clientId: string, messageId: number): void {
  let ids = index.incoming.get(clientId)
  if (ids === undefined) index.incoming.set(clientId, ids = new Set())
  ids.add(messageId)
}

function deleteIncoming (index: SessionIndex, clientId: string, messageId: number): void {
  const ids = index.incoming.get(clientId)
  if (ids === undefined) return
  ids.delete(messageId)
  if (ids.size === 0) index.incoming.delete(clientId)
}

/**
 * The store aedes gets, answering from the index what it knows is not stored. `index` is filled in `setup`, which
 * aedes awaits before it uses the store (and which stays an async function, as aedes requires).
 */
export function skipEmptySessions<T extends object> (inner: T, db: ClassicLevel<string, Buffer>): { persistence: T, index: SessionIndex } {
  const index = newIndex()
  const call = (name: string, ...args: unknown[]): unknown => (Reflect.get(inner, name) as AnyFn).apply(inner, args)
  const idOf = (c: unknown): string => (c as ClientLike).id
  const emptyStream = (): Readable => Readable.from([])
  const overrides: Record<string, AnyFn> = {
    async setup (broker: unknown) {
      const loaded = await loadSessionIndex(db)
      for (const k of ['subscriptions', 'wills', 'outgoing'] as const) for (const id of loaded[k]) index[k].add(id)
      for (const [id, ids] of loaded.incoming) for (const m of ids) addIncoming(index, id, m)
      return await call('setup', broker)
    },
    addSubscriptions (client: unknown, subs: unknown) {
      index.subscriptions.add(idOf(client))
      return call('addSubscriptions', client, subs)
    },
    subscriptionsByClient (client: unknown) {
      return index.subscriptions.has(idOf(client)) ? call('subscriptionsByClient', client) : Promise.resolve([])
    },
    cleanSubscriptions (client: unknown) {
      return index.subscriptions.has(idOf(client)) ? call('cleanSubscriptions', client) : Promise.resolve()
    },
    putWill (client: unknown, packet: unknown) {
      index.wills.add(idOf(client))
      return call('putWill', client, packet)
    },
    getWill (client: unknown) {
      return index.wills.has(idOf(client)) ? call('getWill', client) : Promise.resolve(undefined)
    },
    delWill (client: unknown) {
      return index.wills.has(idOf(client)) ? call('delWill', client) : Promise.resolve(undefined)
    },
    outgoingEnqueue (sub: unknown, packet: unknown) {
      index.outgoing.add((sub as { clientId: string }).clientId)
      return call('outgoingEnqueue', sub, packet)
    },
    outgoingEnqueueCombi (subs: unknown, packet: unknown) {
      for (const s of (subs ?? []) as Array<{ clientId: string }>) index.outgoing.add(s.clientId)
      return call('outgoingEnqueueCombi', subs, packet)
    },
    outgoingUpdate (client: unknown, packet: unknown) {
      index.outgoing.add(idOf(client))
      return call('outgoingUpdate', client, packet)
    },
    outgoingClearMessageId (client: unknown, packet: unknown) {
      return index.outgoing.has(idOf(client)) ? call('outgoingClearMessageId', client, packet) : Promise.resolve(undefined)
    },
    incomingStorePacket (client: unknown, packet: unknown) {
      addIncoming(index, idOf(client), (packet as { messageId: number }).messageId)
      return call('incomingStorePacket', client, packet)
    },
    incomingGetPacket (client: unknown, packet: unknown) {
      // the same refusal as aedes-persistence-level's, which aedes takes as "a new message"
      if (index.incoming.get(idOf(client))?.has((packet as { messageId: number }).messageId) !== true) return Promise.reject(new Error('no such packet'))
      return call('incomingGetPacket', client, packet)
    },
    incomingDelPacket (client: unknown, packet: unknown) {
      deleteIncoming(index, idOf(client), (packet as { messageId: number }).messageId)
      return call('incomingDelPacket', client, packet)
    },
    // a clean start drops the client's unreleased QoS 2 messages (aedes-hooks forgetIncoming): a LevelDB range
    // delete behind a group-commit barrier, 23% of the busy time of 10,000 clean connects, for ids that have none
    cleanIncoming (client: unknown) {
      const id = idOf(client)
      if (!index.incoming.delete(id)) return Promise.resolve()
      return call('cleanIncoming', client)
    },
    outgoingStream (client: unknown) {
      return index.outgoing.has(idOf(client)) ? call('outgoingStream', client) : emptyStream()
    }
  }
  const persistence = new Proxy(inner, {
    get (target, prop) {
      if (typeof prop === 'string' && Object.hasOwn(overrides, prop)) return overrides[prop]
      // receiver = target: getters of aedes-persistence-level read private fields
      const v = Reflect.get(target, prop) as unknown
      return typeof v === 'function' ? (v as AnyFn).bind(target) : v
    }
  })
  return { persistence, index }
}
