/**
 * Shared subscriptions (`$share/GROUP/FILTER`, MQTT 5 section 4.8.2; mosquitto 2.0 also takes them from 3.1.1
 * clients): each message matching FILTER goes to one member of each group, round robin among the members that can
 * take it. aedes 2.0.0-beta.1 has none (it answers a v5 `$share/` SUBSCRIBE with 0x9E and would hold a 3.1.1 one
 * as a literal filter), so Midge routes them itself:
 *
 * - The name aedes holds. A client's `$share/g/f` is renamed on the parser, before aedes sees it, to
 *   `$MIDGE/share/g/f` (INTERNAL_PREFIX): aedes then keeps it like any subscription (the client's table, the
 *   persistent session's store, restore on reconnect, UNSUBSCRIBE reason codes), and its own emitter listener for
 *   that name never fires, because nothing can publish to `$MIDGE` (aedes-hooks drops it). No retained message has
 *   such a topic either, so none is sent on a shared subscribe (4.8.2: no retained messages on a shared subscription).
 * - The routing. One emitter listener per group (filter + group name), added when the group gets its first member:
 *   it picks the member, copies the message for it (the subscription's QoS, Retain As Published, Subscription
 *   Identifier) and hands the copy to that client's delivery (delivery.ts: window, slow consumers, CONNACK hold),
 *   and, for a persistent session, to its stored queue first (aedes' `outgoingUpdate` finds it there, and an
 *   offline member gets it on reconnect, as mosquitto queues for it). The copy's broker id carries the group, so a
 *   client with a normal subscription beside a shared one, or in two groups, gets one copy for each (as from
 *   mosquitto), and the stored copies do not overwrite each other.
 * - Who can take a message: a connected member whose read ACL allows the topic and that is not a stuck slow
 *   consumer (a stuck one only if nobody else can), or a persistent member offline (or reconnecting) when the
 *   message goes out at QoS 1/2. A QoS 0 message is not queued for an offline member; it goes to a connected one.
 *   mosquitto rotates strictly and loses the message for that group when the chosen member's ACL refuses it.
 * - A member that leaves takes no message with it: when a clean-session member's connection closes, the QoS 1
 *   copies it had not acknowledged (PUBACK) and the QoS 2 copies not yet sent go to another member
 *   (a QoS 2 message already sent may have been received, and is not sent to anyone else [MQTT-4.8.2-5]).
 *   A persistent member's session keeps its copies while it is away (the spec allows waiting for it; mosquitto
 *   does), and when the session ends (clean start, expiry, Session Expiry 0 at DISCONNECT) what was queued for it
 *   goes to another member, QoS 2 copies already sent excepted (mosquitto deletes them with the session).
 * - Persistent members survive a restart with LevelDB: their stored `$MIDGE/share/...` subscriptions are read at
 *   start-up (`load`), so messages queue for them before they come back. A session that ends (clean start, expiry,
 *   `persistent_client_expiration`) leaves its groups when the store's `cleanSubscriptions` runs for it.
 *
 * Invalid forms: a v5 client gets DISCONNECT 0x81 for a share name with `+` or `#` (as from mosquitto), 0x82
 * (Protocol Error) for `$share`, `$share/`, `$share/g`, `$share//f`, `$share/g/` [MQTT-4.8.2-1] [MQTT-4.8.2-2] and
 * for No Local on a shared subscription [MQTT-3.8.3-4]; a 3.1.1 client gets SUBACK 0x80 for such a filter.
 * Cluster mode: off (see docs/cluster.md): every node would pick its own member.
 */
import type { Aedes, Client, Subscription } from 'aedes'
import type { ClassicLevel } from 'classic-level'
import { brokerInternals, clientInternals, clientOfParser, parsedProtocolVersion, type ParsedPacket, takePacketId, type ClientInternals, type DeliverPacket } from '../aedes/internals.js'
import type { Logger } from '../logging/logger.js'
import type { AuthChain } from '../auth/chain.js'
import type { ClientInfo } from './aedes-hooks.js'
import { REFUSED_FILTER, dollarAllowed } from '../mqtt/reserved-topics.js'
import { SHARE_PREFIX, INTERNAL_PREFIX, parseShare, internalName, fromInternal, displayFilter } from '../mqtt/shared-names.js'
import type { SubscriptionCounter } from './limits.js'
import { keepsUp } from './delivery.js'
import { topicMatches } from '../mqtt/topic-match.js'

// the names are parsed in mqtt/shared-names.ts; re-exported for the callers that route
export { SHARE_PREFIX, INTERNAL_PREFIX, parseShare, matchingFilter, displayFilter, type ParsedShare } from '../mqtt/shared-names.js'

const MALFORMED_PACKET = 0x81
const PROTOCOL_ERROR = 0x82
/** Separates the publisher's broker id from the group in a shared copy's broker id. */
const COPY_ID_SEPARATOR = '~'
/** Unacknowledged copies remembered per clean member; beyond, the oldest are forgotten (not given to another). */
const MAX_TRACKED_PER_MEMBER = 10_000

type Done = (err?: Error | null) => void
type Emitted = DeliverPacket & { payload: Buffer, retain?: boolean, dup?: boolean, clientId?: string, cmd?: string }
type AuthorizeSubscribe = (client: Client, sub: Subscription, cb: (err: Error | null, sub?: Subscription | null) => void) => void
/** A subscription as aedes passes it: the SUBSCRIBE's options, or as restored from the store. */
type SubscribeRequest = Subscription & { rh?: number, rap?: boolean, nl?: boolean, subscriptionIdentifier?: number }
interface SubscribePacket { cmd: string, subscriptions?: SubscribeRequest[], unsubscriptions?: string[], messageId?: number }
interface StoredSub { clientId: string, topic: string, qos: number }
interface Store {
  outgoingEnqueueCombi (subs: StoredSub[], packet: object): Promise<unknown>
  subscriptionsByClient (client: { id: string }): Promise<SubscribeRequest[]>
  outgoingStream (client: { id: string }): AsyncIterable<unknown>
  cleanSubscriptions (client: { id: string }): Promise<void>
}

interface Member {
  clientId: string
  /** The connected client holding the subscription; undefined while a persistent member is away. */
  client: Client | undefined
  /** The session outlives the connection: copies go to its stored queue. */
  persistent: boolean
  qos: number
  rap: boolean
  si: number | undefined
}

interface Group {
  /** The name aedes holds for it (`$MIDGE/share/g/f`): the group's key. */
  name: string
  filter: string
  members: Member[]
  /** Index of the member whose turn is next. */
  next: number
  listener: (packet: Emitted, done: Done) => void
}

/** A QoS 1/2 copy handed to a clean member and not yet acknowledged. */
interface InFlight { copy: Emitted, original: Emitted, group: string }

export interface SharedSubscriptionDeps {
  /** False in cluster mode: a SUBSCRIBE to `$share/...` is refused (v5 0x9E, 3.1.1 0x80), the CONNACK says 0. */
  enabled: boolean
  /** The broker (created after this object: its hooks and store wrappers come from here). */
  aedes: () => Aedes
  auth: AuthChain
  clientInfo: WeakMap<Client, ClientInfo>
  /** `max_inflight_messages`: with no outgoing window, copies get their packet id here (see `deliver`). */
  maxInflight: number
  subscriptions?: SubscriptionCounter
  /** A message no member could take. */
  onDropped?: () => void
  log: Logger
}

export class SharedSubscriptions {
  private readonly groups = new Map<string, Group>()
  /** The subscriptions of a v5 SUBSCRIBE refused as a whole, with the DISCONNECT reason code. */
  private readonly refusals = new WeakMap<object, number>()
  /** Unacknowledged QoS 1/2 copies per clean member, in the order handed over. */
  private readonly inFlight = new WeakMap<object, Set<InFlight>>()

  constructor (private readonly deps: SharedSubscriptionDeps) {}

  /** Shared subscriptions held (members of every group, offline persistent ones included): $SYS shared_subscriptions/count. */
  count (): number {
    let n = 0
    for (const g of this.groups.values()) n += g.members.length
    return n
  }

  /**
   * A message on `topic` may go to a persistent member's stored queue: the QoS 1 journal keeps it until it is
   * queued (durability.ts), as for a persistent session's normal subscription.
   */
  queuesFor (topic: string): boolean {
    for (const g of this.groups.values()) {
      if (g.members.some(m => m.persistent && m.qos > 0) && topicMatches(g.filter, topic)) return true
    }
    return false
  }

  /** A v5 CONNACK's amendment with Shared Subscription Available as configured (aedes always says 0). */
  wrapConnack<C, A extends object> (inner: (c: C) => A | undefined): (c: C) => (A & { sharedSubscriptionAvailable?: boolean }) | undefined {
    if (!this.deps.enabled) return inner
    return c => {
      const a = inner(c)
      return a === undefined ? undefined : { ...a, sharedSubscriptionAvailable: true }
    }
  }

  /** After `Aedes.createBroker`, before any listener. */
  attach (): void {
    const aedes = this.deps.aedes()
    if (!this.deps.enabled) return
    // an UNSUBSCRIBE, and the close of a clean session (aedes unsubscribes each filter then)
    aedes.on('unsubscribe', (topics: string[], c: Client) => {
      const released: string[] = []
      for (const t of topics) {
        if (!t.startsWith(INTERNAL_PREFIX)) continue
        this.leave(t, c)
        released.push(displayFilter(t))
      }
      if (released.length > 0) this.deps.subscriptions?.release(c, released)
    })
    aedes.on('clientDisconnect', (c: Client) => { this.disconnected(c) })
  }

  /**
   * LevelDB: the persistent members stored before this start join their groups now, offline, so that messages
   * queue for them until they come back.
   */
  async load (db: ClassicLevel<string, Buffer> | undefined): Promise<void> {
    if (!this.deps.enabled || db === undefined) return
    const ids = new Set<string>()
    const family = 'subscriptions:'
    for await (const k of db.keys({ gte: family, lt: 'subscriptions;' })) {
      const end = k.indexOf(':', family.length)
      if (end > 0 && k.startsWith(INTERNAL_PREFIX, end + 1)) ids.add(decodeURIComponent(k.slice(family.length, end)))
    }
    for (const id of ids) {
      for (const s of await this.store().subscriptionsByClient({ id })) {
        if (s.topic.startsWith(INTERNAL_PREFIX)) await this.join(s.topic, id, undefined, true, s)
      }
    }
    if (ids.size > 0) this.deps.log.info({ clients: ids.size }, `Restored the shared subscriptions of ${ids.size} persistent session(s).`)
  }

  /**
   * The store aedes uses: a session that ends (clean start, expiry, persistent_client_expiration) has its
   * subscriptions removed through `cleanSubscriptions`, and leaves its groups then. What was queued for it through
   * a group goes to another member first, before its queue is cleared ([MQTT-4.8.2]: a QoS 1 message SHOULD go to
   * another member when the chosen one's session ends; a QoS 2 one already sent MUST NOT [MQTT-4.8.2-5]).
   */
  watchStore (store: object): void {
    if (!this.deps.enabled) return
    const s = store as Store
    const orig = s.cleanSubscriptions.bind(s)
    s.cleanSubscriptions = async (client) => {
      if (this.sessionEnded(client.id)) await this.rehome(client.id)
      return await orig(client)
    }
  }

  /** The copies queued for a session that ended go to their groups' other members. */
  private async rehome (clientId: string): Promise<void> {
    const queued: Emitted[] = []
    for await (const p of this.store().outgoingStream({ id: clientId }) as AsyncIterable<Emitted>) queued.push(p)
    for (const p of queued) {
      const at = p.cmd === 'publish' && p.brokerId ? p.brokerId.indexOf(COPY_ID_SEPARATOR) : -1
      if (at < 0 || (p.qos === 2 && p.messageId !== undefined)) continue
      const g = this.groups.get(decodeURIComponent(p.brokerId!.slice(at + COPY_ID_SEPARATOR.length)))
      if (g === undefined) { this.deps.onDropped?.(); continue }
      const original: Emitted = { ...p, brokerId: p.brokerId!.slice(0, at), dup: false }
      delete original.messageId
      // route reports no error: a failed delivery is logged and counted where it fails
      this.route(g, original, () => {})
    }
  }

  /**
   * The packet rule that renames shared filters before aedes handles them and notes acknowledgements (see the file
   * comment): one function per mount point, shared by its connections, called with the client's parser as `this`.
   */
  private readonly packetRules = new Map<string | undefined, (this: object, p: ParsedPacket) => void>()
  packetRule (mountPoint: string | undefined): (this: object, p: ParsedPacket) => void {
    let rule = this.packetRules.get(mountPoint)
    if (rule !== undefined) return rule
    const shared = this
    rule = function sharedNames (this: object, p: ParsedPacket): void {
      const packet = p as SubscribePacket
      if (packet.cmd === 'subscribe' && packet.subscriptions !== undefined) shared.renameSubscribe(clientOfParser(this), packet, mountPoint)
      else if (packet.cmd === 'unsubscribe' && packet.unsubscriptions !== undefined) {
        packet.unsubscriptions = packet.unsubscriptions.map(t => shared.rename(t, mountPoint, false))
      } else if ((packet.cmd === 'puback' || packet.cmd === 'pubrec') && packet.messageId !== undefined) {
        shared.acknowledged(clientOfParser(this), packet.messageId, packet.cmd === 'puback' ? 1 : 2)
      }
    }
    this.packetRules.set(mountPoint, rule)
    return rule
  }

  /**
   * The name aedes is to handle for a filter the client sent: the internal one for a valid `$share/g/f`,
   * REFUSED_FILTER for an invalid one, one under the internal prefix or any in cluster mode (where a v5 client's is
   * left for aedes to answer 0x9E); any other filter as it is.
   */
  private rename (topic: string, mountPoint: string | undefined, v5: boolean): string {
    // the mount point's rule runs first and prefixes every filter: a shared one keeps it on its filter part
    const bare = mountPoint !== undefined && topic.startsWith(mountPoint) ? topic.slice(mountPoint.length) : topic
    if (bare.startsWith(INTERNAL_PREFIX)) return REFUSED_FILTER
    const s = parseShare(bare)
    if (s === undefined) return topic
    if (!this.deps.enabled) return v5 && bare.startsWith(SHARE_PREFIX) ? bare : REFUSED_FILTER
    if ('invalid' in s) return REFUSED_FILTER
    return internalName(s.group, (mountPoint ?? '') + s.filter)
  }

  /**
   * A v5 SUBSCRIBE with an invalid shared filter, or No Local on a shared one, is a protocol error: nothing of it
   * is subscribed, no SUBACK is sent (aedes sends none for a SUBSCRIBE without packet identifier) and the client
   * gets DISCONNECT when aedes handles it, after its CONNACK (the packet may be parsed in the CONNECT's read).
   */
  private renameSubscribe (client: object, packet: SubscribePacket, mountPoint: string | undefined): void {
    const subs = packet.subscriptions!
    const v5 = parsedProtocolVersion(client) === 5
    for (const sub of subs) {
      if (v5 && this.deps.enabled) {
        const bare = mountPoint !== undefined && sub.topic.startsWith(mountPoint) ? sub.topic.slice(mountPoint.length) : sub.topic
        const s = parseShare(bare)
        const reason = s === undefined ? undefined : 'invalid' in s ? (s.invalid === 'malformed' ? MALFORMED_PACKET : PROTOCOL_ERROR) : sub.nl === true ? PROTOCOL_ERROR : undefined
        if (reason !== undefined) {
          for (const x of subs) {
            x.topic = REFUSED_FILTER
            this.refusals.set(x, reason)
          }
          delete packet.messageId
          return
        }
      }
      sub.topic = this.rename(sub.topic, mountPoint, v5)
    }
    // aedes keeps one of each filter of a SUBSCRIBE: each refused one keeps its own code in the SUBACK [MQTT-3.9.3-1]
    subs.forEach((sub, i) => { if (sub.topic === REFUSED_FILTER) sub.topic = `${REFUSED_FILTER}/${i}` })
  }

  /**
   * Wraps Midge's authorizeSubscribe: a shared subscription is checked as `$share/g/f` (ACL, plug-ins,
   * max_subscriptions_per_client, max_qos), then joins its group under the name aedes holds.
   */
  authorizeSubscribe (inner: AuthorizeSubscribe): AuthorizeSubscribe {
    return (client, sub, cb) => {
      const refusal = this.refusals.get(sub)
      if (refusal !== undefined) {
        this.deps.log.info({ clientId: client.id, reasonCode: refusal }, `Client ${client.id} disconnected: invalid shared subscription.`)
        client.disconnect({ reasonCode: refusal })
        cb(null, null)
        return
      }
      const s = fromInternal(sub.topic)
      if (s === undefined || !this.deps.enabled) { inner(client, sub, cb); return }
      const name = sub.topic
      // `$MIDGE` is where refused publishes go: never a filter of a group
      if (!dollarAllowed('subscribe', s.filter)) { cb(null, null); return }
      const asked: Subscription = { ...sub, topic: displayFilter(name) }
      inner(client, asked, (err, granted) => {
        if (err || !granted) { cb(err, granted); return }
        sub.qos = granted.qos
        this.join(name, client.id, client, !client.clean, sub).then(() => cb(null, sub), (e: Error) => cb(e))
      })
    }
  }

  private async join (name: string, clientId: string, client: Client | undefined, persistent: boolean, sub: SubscribeRequest): Promise<void> {
    const parts = fromInternal(name)
    if (parts === undefined) return
    let g = this.groups.get(name)
    if (g === undefined) {
      const group: Group = { name, filter: parts.filter, members: [], next: 0, listener: (packet, done) => { this.route(group, packet, done) } }
      g = group
      this.groups.set(name, group)
      await new Promise<void>(resolve => { this.deps.aedes().subscribe(parts.filter, group.listener as never, () => resolve()) })
    }
    const m: Member = { clientId, client, persistent, qos: sub.qos, rap: sub.rap === true, si: sub.subscriptionIdentifier }
    const at = g.members.findIndex(x => x.clientId === clientId)
    if (at >= 0) g.members[at] = m
    else g.members.push(m)
  }

  private leave (name: string, client: Client): void {
    const g = this.groups.get(name)
    if (g === undefined) return
    this.removeMembers(g, m => m.clientId === client.id && (m.client === client || m.client === undefined))
  }

  private removeMembers (g: Group, which: (m: Member) => boolean): void {
    const before = g.members.length
    const kept: Member[] = []
    for (let i = 0; i < g.members.length; i++) {
      const m = g.members[i]!
      if (!which(m)) { kept.push(m); continue }
      // the member after the one removed keeps its turn
      if (i < g.next) g.next--
    }
    if (kept.length === before) return
    g.members = kept
    if (g.next >= kept.length) g.next = 0
    if (kept.length === 0) {
      this.groups.delete(g.name)
      this.deps.aedes().unsubscribe(g.filter, g.listener as never, () => {})
    }
  }

  /** A persistent session ended: its memberships go (not one a connected client of that id holds now); true if it had any. */
  private sessionEnded (clientId: string): boolean {
    let had = false
    for (const g of [...this.groups.values()]) {
      this.removeMembers(g, m => {
        const ends = m.clientId === clientId && (m.client === undefined || clientInternals(m.client).closed)
        had ||= ends
        return ends
      })
    }
    return had
  }

  /** A connection closed: a persistent member stays, offline; a clean one's unacknowledged copies go to others. */
  private disconnected (client: Client): void {
    for (const g of [...this.groups.values()]) {
      for (const m of g.members) if (m.client === client && m.persistent) m.client = undefined
      this.removeMembers(g, m => m.client === client)
    }
    const left = this.inFlight.get(client)
    // at shutdown every member leaves: nobody is left to take them
    if (left === undefined || this.deps.aedes().closed) return
    this.inFlight.delete(client)
    for (const f of left) {
      // the copy's QoS is the one it went out at (lowered by another matching subscription of the client, see
      // aedes-hooks clampQos): sent at QoS 0 it needs no acknowledgement; [MQTT-4.8.2-5] a QoS 2 message already
      // sent may have arrived: not sent to another client
      if (f.copy.qos === 0 || (f.copy.qos === 2 && f.copy.messageId !== undefined)) continue
      const g = this.groups.get(f.group)
      if (g === undefined) { this.deps.onDropped?.(); continue }
      this.route(g, f.original, () => {}, client)
    }
  }

  /** PUBACK (QoS 1) or PUBREC (QoS 2) from a member: that copy arrived. */
  private acknowledged (client: object, messageId: number, qos: number): void {
    const set = this.inFlight.get(client)
    if (set === undefined) return
    for (const f of set) {
      if (f.copy.messageId === messageId && f.copy.qos === qos) { set.delete(f); return }
    }
  }

  private store (): Store {
    return brokerInternals(this.deps.aedes()).persistence as Store
  }

  /** One message for one group: to the next member that can take it; `except` is a member that just left. */
  private route (g: Group, packet: Emitted, done: Done, except?: Client): void {
    // [MQTT-4.7.2-1] a filter starting with a wildcard does not match `$` topics
    if (packet.topic.charCodeAt(0) === 36 && g.filter.charCodeAt(0) !== 36) { done(); return }
    const n = g.members.length
    let chosen = -1
    // first pass: members that keep up; second: a stuck one rather than nobody
    for (let pass = 0; pass < 2 && chosen < 0; pass++) {
      for (let i = 0; i < n; i++) {
        const at = (g.next + i) % n
        if (this.canTake(g.members[at]!, packet, pass === 0, except)) { chosen = at; break }
      }
    }
    if (chosen < 0) {
      this.deps.onDropped?.()
      done()
      return
    }
    g.next = (chosen + 1) % n
    this.deliver(g, g.members[chosen]!, packet, done)
  }

  private canTake (m: Member, packet: Emitted, strict: boolean, except: Client | undefined): boolean {
    const c = m.client
    const online = c !== undefined && c !== except && !clientInternals(c).closed
    if (!online) return m.persistent && Math.min(m.qos, packet.qos) > 0 && (c === undefined || c !== except)
    if (strict && !keepsUp(c)) return false
    return this.mayReceive(c, packet.topic)
  }

  /** The member's read ACL (mosquitto: checked for the client that receives). */
  private mayReceive (c: Client, topic: string): boolean {
    if (!this.deps.auth.checksReceive) return true
    const info = this.deps.clientInfo.get(c)
    return info === undefined || this.deps.auth.authorizeReceive(info.ctx.listener, { clientId: c.id, username: info.username, topic })
  }

  private deliver (g: Group, m: Member, original: Emitted, done: Done): void {
    const qos = Math.min(m.qos, original.qos)
    const copy: Emitted = { ...original, qos, retain: m.rap ? original.retain === true : false }
    // its own broker id: a second subscription of the same client (normal, or another group) gets its own copy
    copy.brokerId = `${original.brokerId ?? ''}${COPY_ID_SEPARATOR}${encodeURIComponent(g.name)}`
    delete copy.messageId
    if (m.si !== undefined) copy.properties = { ...original.properties, subscriptionIdentifier: m.si }
    const c = m.client
    const online = c !== undefined && !clientInternals(c).closed
    const live = (): void => {
      if (!online) { done(); return }
      const ci = clientInternals(c)
      if (qos === 0) { ci.deliver0(copy, () => done()); return }
      if (!m.persistent) this.track(c, ci, { copy, original, group: g.name })
      ci.deliverQoS(copy, () => done())
    }
    if (!m.persistent || qos === 0) { live(); return }
    // a persistent session's copy is stored first: aedes updates it there when it sends it, and an offline member
    // gets it when it comes back
    this.store().outgoingEnqueueCombi([{ clientId: m.clientId, topic: g.name, qos }], copy)
      .then(() => true, (err: Error) => {
        this.deps.log.warn({ clientId: m.clientId, topic: original.topic, err: err.message }, 'could not queue a shared subscription message')
        return false
      })
      .then(live)
      // a fault in the delivery path must not end the process (an unhandled rejection would)
      .catch((err: Error) => {
        this.deps.log.error({ clientId: m.clientId, topic: original.topic, err: err.message }, 'shared subscription delivery failed')
        done()
      })
  }

  private track (c: Client, ci: ClientInternals, f: InFlight): void {
    // with no outgoing window aedes numbers the packet itself, on a copy of it: number it here so the
    // acknowledgement can be matched
    if (this.deps.maxInflight === 0) f.copy.messageId = takePacketId(ci)
    let set = this.inFlight.get(c)
    if (set === undefined) this.inFlight.set(c, set = new Set())
    if (set.size >= MAX_TRACKED_PER_MEMBER) set.delete(set.values().next().value!)
    set.add(f)
  }
}
