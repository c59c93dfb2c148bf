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
 * start-up. A lookup of any other id is refused, with Midge's typed NoSuchPacketError (no-such-packet.ts), and a clean
 * start of a client with none (`cleanIncoming`, a LevelDB range delete) does nothing.
 */
import type { Readable } from 'node:stream'
import type { ClassicLevel } from 'classic-level'
import { noSuchPacket } from './no-such-packet.js'
import { EMPTY_STORED_QUEUE } from '../aedes/internals.js'
import { INCOMING, OUTGOING, OUTGOING_ID, SUBSCRIPTIONS, WILL, range } from './level-layout.js'
import type { StoreBackend, StoreClient, StorePacket, StoreSubscriber, StoreSubscription } from './store.js'

export interface SessionIndex {
  subscriptions: Set<string>
  wills: Set<string>
  outgoing: Set<string>
  /** QoS 2 message ids stored per client (PUBREC sent, PUBREL not handled yet). */
  incoming: Map<string, Set<number>>
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
 * The LevelDB backend as MidgeStore (store.ts) sees it, answering from the index what it knows is not stored.
 * `index` is filled in `setup`, which aedes awaits before it uses the store (and which stays an async function, as
 * aedes requires). Methods the index does not concern are forwarded as they are; the inner store's methods are
 * looked up on every call (shared-subscriptions.ts replaces its `cleanSubscriptions`).
 */
export class SessionIndexedStore implements StoreBackend {
  constructor (private readonly inner: StoreBackend, private readonly db: ClassicLevel<string, Buffer>, readonly index: SessionIndex = newIndex()) {}

  async setup (broker: unknown): Promise<void> {
    const loaded = await loadSessionIndex(this.db)
    const index = this.index
    for (const k of ['subscriptions', 'wills', 'outgoing'] as const) for (const id of loaded[k]) index[k].add(id)
    for (const [id, ids] of loaded.incoming) for (const m of ids) addIncoming(index, id, m)
    await this.inner.setup(broker)
  }

  addSubscriptions (client: StoreClient, subs: StoreSubscription[]): Promise<unknown> {
    this.index.subscriptions.add(client.id)
    return this.inner.addSubscriptions(client, subs)
  }

  subscriptionsByClient (client: StoreClient): Promise<StoreSubscription[]> {
    return this.index.subscriptions.has(client.id) ? this.inner.subscriptionsByClient(client) : Promise.resolve([])
  }

  cleanSubscriptions (client: StoreClient): Promise<unknown> {
    return this.index.subscriptions.has(client.id) ? this.inner.cleanSubscriptions(client) : Promise.resolve()
  }

  putWill (client: StoreClient, packet: StorePacket): Promise<unknown> {
    this.index.wills.add(client.id)
    return this.inner.putWill(client, packet)
  }

  getWill (client: StoreClient): Promise<StorePacket | undefined> {
    return this.index.wills.has(client.id) ? this.inner.getWill(client) : Promise.resolve(undefined)
  }

  delWill (client: StoreClient): Promise<StorePacket | undefined> {
    return this.index.wills.has(client.id) ? this.inner.delWill(client) : Promise.resolve(undefined)
  }

  outgoingEnqueue (sub: StoreSubscriber, packet: StorePacket): Promise<void> {
    this.index.outgoing.add(sub.clientId)
    return this.inner.outgoingEnqueue(sub, packet)
  }

  outgoingEnqueueCombi (subs: StoreSubscriber[], packet: StorePacket): Promise<void> {
    for (const s of subs ?? []) this.index.outgoing.add(s.clientId)
    return this.inner.outgoingEnqueueCombi(subs, packet)
  }

  outgoingUpdate (client: StoreClient, packet: StorePacket): Promise<void> {
    this.index.outgoing.add(client.id)
    return this.inner.outgoingUpdate(client, packet)
  }

  outgoingClearMessageId (client: StoreClient, packet: { messageId?: number }): Promise<StorePacket | undefined> {
    return this.index.outgoing.has(client.id) ? this.inner.outgoingClearMessageId(client, packet) : Promise.resolve(undefined)
  }

  outgoingStream (client: StoreClient): Readable {
    return this.index.outgoing.has(client.id) ? this.inner.outgoingStream(client) : EMPTY_STORED_QUEUE
  }

  incomingStorePacket (client: StoreClient, packet: StorePacket): Promise<void> {
    addIncoming(this.index, client.id, packet.messageId ?? 0)
    return this.inner.incomingStorePacket(client, packet)
  }

  incomingGetPacket (client: StoreClient, packet: { messageId?: number }): Promise<StorePacket> {
    // a refusal, as aedes-persistence-level's, which aedes takes as "a new message"; typed, and without a stack
    if (this.index.incoming.get(client.id)?.has(packet.messageId ?? 0) !== true) return Promise.reject(noSuchPacket())
    return this.inner.incomingGetPacket(client, packet)
  }

  incomingDelPacket (client: StoreClient, packet: { messageId?: number }): Promise<void> {
    deleteIncoming(this.index, client.id, packet.messageId ?? 0)
    return this.inner.incomingDelPacket(client, packet)
  }

  /**
   * A clean start drops the client's unreleased QoS 2 messages (aedes-hooks forgetIncoming): a LevelDB range delete
   * behind a group-commit barrier, 23% of the busy time of 10,000 clean connects, for ids that have none.
   */
  async cleanIncoming (client: StoreClient): Promise<void> {
    if (!this.index.incoming.delete(client.id)) return
    if (typeof this.inner.cleanIncoming === 'function') await this.inner.cleanIncoming(client)
  }

  // ---- forwarded as they are ----

  storeRetained (packet: StorePacket): Promise<void> { return this.inner.storeRetained(packet) }
  createRetainedStreamCombi (patterns: string[]): Readable { return this.inner.createRetainedStreamCombi(patterns) }
  createRetainedStream (pattern: string): Readable { return this.inner.createRetainedStream(pattern) }
  removeSubscriptions (client: StoreClient, topics: string[]): Promise<unknown> { return this.inner.removeSubscriptions(client, topics) }
  subscriptionsByTopic (topic: string): Promise<StoreSubscriber[]> { return this.inner.subscriptionsByTopic(topic) }
  countOffline (): Promise<{ subsCount: number, clientsCount: number }> { return this.inner.countOffline() }
  streamWill (brokers?: Record<string, unknown>): Readable { return this.inner.streamWill(brokers) }
  getClientList (topic: string): Readable { return this.inner.getClientList(topic) }
}

/** The LevelDB backend behind its session index, and the index (for tests). */
export function skipEmptySessions (inner: StoreBackend, db: ClassicLevel<string, Buffer>): { persistence: SessionIndexedStore, index: SessionIndex } {
  const persistence = new SessionIndexedStore(inner, db)
  return { persistence, index: persistence.index }
}
