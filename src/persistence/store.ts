/**
 * MidgeStore: the one store aedes is given (`Aedes.createBroker({ persistence })`), around the backend's
 * aedes-persistence object (memory, LevelDB behind the session index, or Redis).
 *
 * aedes keeps no state about the store beyond calling its methods, so everything Midge changes about storage is
 * here, as named steps, applied in this order from aedes inwards:
 *
 *   fast paths        QoS 2 lookups without a stack trace, PUBREL deletes settled, retained-stream errors logged
 *   DUP marking       a resent stored message carries DUP=1; the stored queue goes through the delivery window
 *   call order        LevelDB only: writes resolve in the order aedes started them
 *   queue limits      max_queued_messages / max_queued_bytes per client (not for a store shared by a cluster)
 *   backend           aedes-persistence-{memory,level,redis}
 *
 * and, beside them, one rule of order: a client's subscriptions are read after a removal still running for it.
 *
 * A method whose name is not in a step is forwarded to the backend as it is. The backend's methods are looked up on
 * every call, not bound once: shared-subscriptions.ts replaces the backend's `cleanSubscriptions` after this store
 * is built.
 *
 * "No such packet": aedes-persistence says it with `new Error('no such packet')`, whose text is no interface.
 * Where Midge must tell a miss from a failure (`outgoingUpdate`, see `updateOrQueue`) it takes Midge's typed
 * NoSuchPacketError (no-such-packet.ts) or asks the backend whether it holds the packet. Where aedes itself reads
 * the rejection (`incomingGetPacket`: aedes takes every rejection as "not stored", publish.js and pubrel.js), the
 * rejection is passed on as the backend made it (only built without a stack).
 */
import { Transform, type Readable } from 'node:stream'
import type { QueueAccounting } from './limits.js'
import { isNoSuchPacket } from './no-such-packet.js'
import { isEmptyStoredQueue } from '../aedes/internals.js'

/** A client as the store sees it: aedes passes its Client, Midge's own callers `{ id }`. */
export interface StoreClient {
  readonly id: string
  /** A clean session (aedes' Client): its stale queue is cleared by aedes, not sent. */
  readonly clean?: boolean
}

/** A stored message or PUBREL (aedes-packet), as far as Midge reads it. */
export interface StorePacket {
  cmd: string
  topic?: string
  payload?: Buffer | Uint8Array
  qos?: number
  retain?: boolean
  dup?: boolean
  messageId?: number
  brokerId?: string
  brokerCounter?: number
}

/** One subscriber of a topic (`subscriptionsByTopic`), the target of `outgoingEnqueue(Combi)`. */
export interface StoreSubscriber {
  clientId: string
  topic?: string
  qos?: number
}

/** One subscription of a client (`addSubscriptions`, `subscriptionsByClient`). */
export interface StoreSubscription {
  topic: string
  qos: number
  rh?: number
  rap?: boolean
  nl?: boolean
}

/**
 * The aedes-persistence methods aedes 2.0.0-beta.1 calls (aedes.js, lib/client.js, lib/handlers/*.js, all
 * promise style), plus the ones Midge calls itself: `createRetainedStream` and `countOffline` ($SYS, the admin API,
 * the journal replay), `getWill` (delayed wills), `getClientList`.
 */
export interface AedesPersistence {
  setup (broker: unknown): Promise<void>
  storeRetained (packet: StorePacket): Promise<void>
  createRetainedStreamCombi (patterns: string[]): Readable
  createRetainedStream (pattern: string): Readable
  addSubscriptions (client: StoreClient, subs: StoreSubscription[]): Promise<unknown>
  removeSubscriptions (client: StoreClient, topics: string[]): Promise<unknown>
  subscriptionsByClient (client: StoreClient): Promise<StoreSubscription[]>
  subscriptionsByTopic (topic: string): Promise<StoreSubscriber[]>
  countOffline (): Promise<{ subsCount: number, clientsCount: number }>
  cleanSubscriptions (client: StoreClient): Promise<unknown>
  outgoingEnqueue (sub: StoreSubscriber, packet: StorePacket): Promise<void>
  outgoingEnqueueCombi (subs: StoreSubscriber[], packet: StorePacket): Promise<void>
  outgoingUpdate (client: StoreClient, packet: StorePacket): Promise<void>
  outgoingClearMessageId (client: StoreClient, packet: { messageId?: number }): Promise<StorePacket | undefined>
  outgoingStream (client: StoreClient): Readable
  incomingStorePacket (client: StoreClient, packet: StorePacket): Promise<void>
  incomingGetPacket (client: StoreClient, packet: { messageId?: number }): Promise<StorePacket>
  incomingDelPacket (client: StoreClient, packet: { messageId?: number }): Promise<void>
  putWill (client: StoreClient, packet: StorePacket): Promise<unknown>
  getWill (client: StoreClient): Promise<StorePacket | undefined>
  delWill (client: StoreClient): Promise<StorePacket | undefined>
  streamWill (brokers?: Record<string, unknown>): Readable
  getClientList (topic: string): Readable
}

/** A backend: the memory and LevelDB stores also drop a client's QoS 2 messages at once; Redis 11 cannot. */
export interface StoreBackend extends AedesPersistence {
  cleanIncoming?: (client: StoreClient) => Promise<void>
}

/**
 * The delivery window for a stored message (broker/delivery.ts `admitStored`): `go` once the client's outgoing
 * window has a slot for it, `go(err)` if the connection closes first. Injected: persistence does not import broker/.
 */
export type AdmitStored = (client: StoreClient, packet: StorePacket, go: (err?: Error) => void) => void

/** What the store logs (a pino Logger fits). */
export interface StoreLog {
  debug (obj: object, msg: string): void
  warn (obj: object, msg: string): void
}

export interface MidgeStoreOptions {
  backend: StoreBackend
  /** Queue limits; none for a store shared by several nodes (cluster_redis: see cluster/store.ts). */
  accounting: QueueAccounting | undefined
  /** Resolve writes in the order they were started (LevelDB, see `inCallOrder`). */
  inCallOrder: boolean
  admitStored: AdmitStored
  log: StoreLog
}

function payloadBytes (p: StorePacket | undefined): number {
  return p?.payload?.length ?? 0
}

export class MidgeStore implements AedesPersistence {
  private readonly backend: StoreBackend
  private readonly accounting: QueueAccounting | undefined
  private readonly ordered: boolean
  private readonly admitStored: AdmitStored
  private readonly log: StoreLog
  /** The last write of the call-order step; its result is the caller's, this chain only keeps the order. */
  private tail: Promise<unknown> = Promise.resolve()
  /** Subscription removals not finished yet, per client id (see `subscriptionsByClient`). */
  private readonly removing = new Map<string, Promise<void>>()

  constructor (opts: MidgeStoreOptions) {
    this.backend = opts.backend
    this.accounting = opts.accounting
    this.ordered = opts.inCallOrder
    this.admitStored = opts.admitStored
    this.log = opts.log
  }

  // ---- what aedes calls, each through its steps, outermost first ----

  /** aedes checks that this is an AsyncFunction and awaits it before using the store. */
  async setup (broker: unknown): Promise<void> {
    await this.backend.setup(broker)
  }

  storeRetained (packet: StorePacket): Promise<void> {
    return this.inCallOrder(this.backend.storeRetained(packet))
  }

  createRetainedStreamCombi (patterns: string[]): Readable {
    return this.retainedStreamLogged(this.backend.createRetainedStreamCombi(patterns))
  }

  outgoingEnqueue (sub: StoreSubscriber, packet: StorePacket): Promise<void> {
    return this.inCallOrder(this.enqueueWithinLimits(sub, packet))
  }

  outgoingEnqueueCombi (subs: StoreSubscriber[], packet: StorePacket): Promise<void> {
    return this.inCallOrder(this.enqueueCombiWithinLimits(subs, packet))
  }

  /**
   * In call order too: aedes writes a message to a persistent session, or a PUBREL, once this resolves. Resolved
   * out of order, PUBRELs left in another order than their PUBRECs came [MQTT-4.6.0-3] (15-persist: MQTT.js,
   * which hands a QoS 2 message over on PUBREL, got b-91 before b-90).
   */
  outgoingUpdate (client: StoreClient, packet: StorePacket): Promise<void> {
    return this.inCallOrder(this.accounting === undefined ? this.backend.outgoingUpdate(client, packet) : this.updateOrQueue(client, packet))
  }

  async outgoingClearMessageId (client: StoreClient, packet: { messageId?: number }): Promise<StorePacket | undefined> {
    const removed = await this.backend.outgoingClearMessageId(client, packet)
    if (removed !== undefined && removed !== null) this.accounting?.remove(client.id, payloadBytes(removed))
    return removed
  }

  outgoingStream (client: StoreClient): Readable {
    return this.resendsMarkedDup(client, this.backend.outgoingStream(client))
  }

  incomingGetPacket (client: StoreClient, packet: { messageId?: number }): Promise<StorePacket> {
    return this.withoutStack(() => this.backend.incomingGetPacket(client, packet))
  }

  incomingDelPacket (client: StoreClient, packet: { messageId?: number }): Promise<void> {
    return this.settledDelete(this.backend.incomingDelPacket(client, packet))
  }

  /** Tracked so that a session coming back meanwhile reads its subscriptions after the removal. */
  removeSubscriptions (client: StoreClient, topics: string[]): Promise<unknown> {
    const id = client.id
    const done = this.backend.removeSubscriptions(client, topics)
    const settled = done.then(() => {}, () => {})
    this.removing.set(id, settled)
    void settled.then(() => { if (this.removing.get(id) === settled) this.removing.delete(id) })
    return done
  }

  /**
   * aedes restores a returning session from this. Midge removes the filters a SUBSCRIBE refused (broker.ts) after
   * the SUBACK: a client that came back at once got them back (20-limits, under load: a refused filter took a
   * granted one's slot). Reads wait for a removal still running for that client.
   */
  subscriptionsByClient (client: StoreClient): Promise<StoreSubscription[]> {
    const pending = this.removing.get(client.id)
    return pending === undefined ? this.backend.subscriptionsByClient(client) : pending.then(() => this.backend.subscriptionsByClient(client))
  }

  // ---- forwarded as they are ----

  createRetainedStream (pattern: string): Readable { return this.backend.createRetainedStream(pattern) }
  addSubscriptions (client: StoreClient, subs: StoreSubscription[]): Promise<unknown> { return this.backend.addSubscriptions(client, subs) }
  subscriptionsByTopic (topic: string): Promise<StoreSubscriber[]> { return this.backend.subscriptionsByTopic(topic) }
  countOffline (): Promise<{ subsCount: number, clientsCount: number }> { return this.backend.countOffline() }
  cleanSubscriptions (client: StoreClient): Promise<unknown> { return this.backend.cleanSubscriptions(client) }
  incomingStorePacket (client: StoreClient, packet: StorePacket): Promise<void> { return this.backend.incomingStorePacket(client, packet) }
  putWill (client: StoreClient, packet: StorePacket): Promise<unknown> { return this.backend.putWill(client, packet) }
  getWill (client: StoreClient): Promise<StorePacket | undefined> { return this.backend.getWill(client) }
  delWill (client: StoreClient): Promise<StorePacket | undefined> { return this.backend.delWill(client) }
  streamWill (brokers?: Record<string, unknown>): Readable { return this.backend.streamWill(brokers) }
  getClientList (topic: string): Readable { return this.backend.getClientList(topic) }

  /** Midge's clean start drops a client's unreleased QoS 2 messages (aedes-hooks.ts); Redis 11 has no way to. */
  async cleanIncoming (client: StoreClient): Promise<void> {
    if (typeof this.backend.cleanIncoming === 'function') await this.backend.cleanIncoming(client)
  }

  // ---- fast paths ----

  /**
   * aedes looks up every new QoS 2 PUBLISH with `incomingGetPacket` and takes the rejection as "new message".
   * aedes-persistence's memory store rejects by throwing `new Error('no such packet')`, so the normal path of every
   * QoS 2 message captured a stack trace. Profiled (`node --cpu-prof`, QoS 2, 10 publishers): 9% of the broker's
   * CPU in `incomingGetPacket`; measured alone, a miss costs 17 us, 6.8 us without the stack. The lookup runs with
   * `Error.stackTraceLimit = 0`: the backend's async method throws synchronously inside this call, so its error is
   * built without a stack; the rejection is otherwise the backend's own.
   */
  private withoutStack<T> (lookup: () => T): T {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    try {
      return lookup()
    } finally {
      Error.stackTraceLimit = limit
    }
  }

  /**
   * aedes 2.0.0-beta.1 deletes a QoS 2 message on PUBREL with `incomingDelPacket(...).finally(done)`: a rejection
   * (the memory store rejects a second PUBREL for the same id, which a client may send when it retries) escapes as
   * an unhandled rejection and ends the process. aedes answers PUBCOMP either way, so a failed delete changes
   * nothing for the client: it is settled here and logged (at debug: the usual cause is a client's retry, and a
   * store that cannot write fails louder elsewhere). Test: 21-fuzz "a repeated PUBREL".
   */
  private settledDelete (deleting: Promise<void>): Promise<void> {
    return deleting.catch((err: Error) => {
      this.log.debug({ err: err.message }, 'deleting a released QoS 2 message failed; PUBCOMP is sent either way')
    })
  }

  /**
   * aedes sends a new subscription its retained messages with `createRetainedStreamCombi(...).pipe(...)`; `pipe`
   * does not pass errors on, so a read error (the store closing under a SUBSCRIBE at shutdown: LevelDB's
   * LEVEL_ITERATOR_NOT_OPEN) was an unhandled 'error' event and the process exited 1 instead of 0. The stream gets
   * a listener here that logs it (the subscriber just gets no more retained messages). Test: midge-cli "SIGTERM and
   * SIGINT", under load.
   */
  private retainedStreamLogged (stream: Readable): Readable {
    stream.on('error', (err: Error) => this.log.warn({ err: err.message }, 'reading retained messages for a new subscription failed'))
    return stream
  }

  // ---- DUP marking ----

  /**
   * A persistent session's stored messages, which aedes sends on reconnect (lib/handlers/connect.js `emptyQueue`):
   *
   * - [MQTT-3.3.1-1] A QoS 1/2 PUBLISH that the broker sends again must carry DUP=1. aedes resends the in-flight
   *   messages with DUP=0 (test: 02-subpub "QoS 1 outbound is resent with DUP"). A message that was already sent has
   *   a packet id assigned by `outgoingUpdate`; a queued one that never left has none. So those with a packet id
   *   get DUP set (aedes-packet copies `dup` when aedes wraps the packet).
   * - `max_inflight_messages`: each message goes on to aedes only when the client's outgoing window has a slot for
   *   it (`admitStored`): aedes writes whatever the stream yields at once.
   */
  private resendsMarkedDup (client: StoreClient, source: Readable): Readable {
    // a clean session's stale queue is cleared by aedes, not written: no DUP, no window, and no stream of Midge's
    // per CONNECT (most devices connect with a clean session)
    if (client.clean === true || isEmptyStoredQueue(source)) return source
    const admit = this.admitStored
    const mark = new Transform({
      objectMode: true,
      transform (packet: StorePacket, _enc, cb) {
        if (packet.cmd !== 'pubrel' && packet.messageId) packet.dup = true
        admit(client, packet, err => err ? cb(err) : cb(null, packet))
      }
    })
    // pipe() does not carry errors: a store read that fails must end aedes' pipeline, not leave it waiting; and a
    // stream that ends early (the client went while it waited for a slot) closes the store's iterator
    source.once('error', err => mark.destroy(err))
    mark.once('close', () => source.destroy())
    return source.pipe(mark)
  }

  // ---- call order ----

  /**
   * Publish order through the store [MQTT-4.6.0-6]. For QoS 1/2, aedes writes each message to the store (retained
   * store, then the offline/outgoing queues of persistent sessions) and only then hands it to the live subscribers.
   * LevelDB completes concurrent writes in any order, so a later message could reach a live persistent subscriber
   * before an earlier one on the same topic (test: 02-subpub "a burst of 1200 QoS 1 publishes ... persistence true":
   * 11 to 21 of 1200 swapped). The writes run concurrently but resolve in the order they were started, so aedes
   * continues each publish in arrival order. The cost is head-of-line waiting for the slowest write of a batch,
   * which LevelDB batches anyway. `outgoingUpdate` was serialized per client before (one LevelDB round trip at a
   * time per subscriber): level-q1-p10 delivered 1,850-2,189 msg/s that way and 3,541-3,582 this way (quick bench
   * runs, same build otherwise). The memory store answers in order and Redis answers one connection's commands in
   * order: for them this step passes the write through.
   */
  private inCallOrder<T> (started: Promise<T>): Promise<T> {
    if (!this.ordered) return started
    const previous = this.tail
    const inOrder = started.then(r => previous.then(() => r), (err: unknown) => previous.then(() => { throw err }))
    // the caller gets the error through inOrder; the chain only keeps the order
    this.tail = inOrder.catch(() => {})
    return inOrder
  }

  // ---- queue limits (limits.ts counts; these are the store calls it applies to) ----

  private async enqueueWithinLimits (sub: StoreSubscriber, packet: StorePacket): Promise<void> {
    await this.enqueueIfRoom(sub, packet)
  }

  /**
   * True once the message is queued for that client, false if its queue is full (counted and logged by the
   * accounting). Admitted and counted synchronously, in call order, before the backend is asked.
   */
  private enqueueIfRoom (sub: StoreSubscriber, packet: StorePacket): Promise<boolean> {
    const acct = this.accounting
    if (acct === undefined) return this.backend.outgoingEnqueue(sub, packet).then(() => true)
    const bytes = payloadBytes(packet)
    if (!acct.admit(sub.clientId, bytes, packet.topic ?? '', packet)) return Promise.resolve(false)
    acct.add(sub.clientId, bytes)
    return this.backend.outgoingEnqueue(sub, packet).then(() => true)
  }

  /**
   * Only subscriptions that deliver at QoS 1 or 2 have a stored queue. aedes-persistence-level (and -redis) index a
   * new QoS 0 subscription only if it is QoS 1/2, but read every stored one back into the index at start-up: after
   * a restart, QoS 1 messages were stored for QoS 0 subscriptions, sent at QoS 0 (never acknowledged, so never
   * deleted) and sent again at every reconnect (17-queue-qos0, LevelDB).
   */
  private async enqueueCombiWithinLimits (subs: StoreSubscriber[], packet: StorePacket): Promise<void> {
    const acct = this.accounting
    if (acct === undefined) { await this.backend.outgoingEnqueueCombi(subs, packet); return }
    const list = (subs ?? []).filter(s => s.qos !== 0)
    if (list.length === 0) { await this.backend.outgoingEnqueueCombi(list, packet); return }
    const bytes = payloadBytes(packet)
    const topic = packet.topic ?? ''
    const admitted = list.filter(s => acct.admit(s.clientId, bytes, topic, packet))
    for (const s of admitted) acct.add(s.clientId, bytes)
    if (admitted.length === 0) return
    await this.backend.outgoingEnqueueCombi(admitted, packet)
  }

  /**
   * A live QoS 1/2 delivery to a persistent session whose message the store does not hold for it (its subscription
   * was routing while the store's subscription index did not list it yet or any more, e.g. a filter removed while
   * the session came back) made aedes close the client: `outgoingUpdate` rejects and aedes treats that as a
   * connection error (20-limits, under load: the returning session was closed right after its CONNACK). The
   * message is queued for it then and updated again; if even that is refused (its queue is full) it goes out
   * untracked, as to a clean session, rather than closing the connection.
   *
   * A miss is told from a failure without reading the error's text: Midge's own stores say it with
   * NoSuchPacketError; otherwise the backend is asked whether it holds the message (its stored queue is read, on
   * this rare path only). Held after all (it was queued between the update and the question), the update is tried
   * once more and its error, if any, is aedes'.
   */
  private async updateOrQueue (client: StoreClient, packet: StorePacket): Promise<void> {
    try {
      await this.backend.outgoingUpdate(client, packet)
      return
    } catch (err) {
      if (packet.cmd !== 'publish' || typeof client.id !== 'string' || packet.brokerId === undefined) throw err
      // the question failing is no answer: the update's own error stands
      const held = !isNoSuchPacket(err) && await this.holdsOutgoing(client, packet).catch(() => { throw err })
      if (held) {
        await this.backend.outgoingUpdate(client, packet)
        return
      }
    }
    const queued = await this.enqueueIfRoom({ clientId: client.id }, packet)
    if (!queued) return
    // aedes takes what this resolves to as an error (lib/client.js: `.then(doWriteQoS, doWriteQoS)`): a second
    // failure is logged, and the message goes out untracked rather than closing the connection
    await this.backend.outgoingUpdate(client, packet).catch((err: Error) => {
      this.log.warn({ clientId: client.id, err: err.message }, 'a message queued for a live delivery could not be given its packet id; it is sent untracked')
    })
  }

  /** Does the backend hold this message (by brokerId and counter, as aedes-persistence keys it) for this client? */
  private async holdsOutgoing (client: StoreClient, packet: StorePacket): Promise<boolean> {
    for await (const stored of this.backend.outgoingStream({ id: client.id }) as AsyncIterable<StorePacket>) {
      if (stored.brokerId === packet.brokerId && stored.brokerCounter === packet.brokerCounter) return true
    }
    return false
  }
}
