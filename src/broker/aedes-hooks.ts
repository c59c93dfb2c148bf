/**
 * Adapts Midge's config and async auth chain to aedes' callback hooks, and fixes the places where aedes'
 * defaults differ from MQTT 3.1.1 / mosquitto (each workaround names the test that shows it).
 */
import type { Duplex } from 'node:stream'
import type { Client, AedesPublishPacket, PublishPacket, Subscription, ConnectPacket } from 'aedes'
import type { Config } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import type { AuthChain } from '../auth/chain.js'
import type { AuthorizeRequest } from '../auth/types.js'
import type { ConnectionContext } from '../listeners/types.js'
import { maxMatchingQos, matchingSubscriptionIds } from '../mqtt/topic-match.js'
import type { ConnackAmendment } from './connack.js'
import type { EnhancedAuthOutcome } from './enhanced-auth.js'
import { subscriptionsOf, clientInternals, refuseUnspecified } from '../aedes/internals.js'
import { isUtf8 } from 'node:buffer'
import type { OutgoingTopicAliases } from './topic-alias-out.js'
import { AckCodes, NO_MATCHING_SUBSCRIBERS, PAYLOAD_FORMAT_INVALID, QUOTA_EXCEEDED } from './ack-codes.js'
import mqttPacket from 'mqtt-packet'
import { checkConnect, screenWill, type ConnectCheck } from '../auth/connect.js'
import { clientIdBeforeAuth, clientIdAfterAuth } from '../auth/client-id.js'
import { LoginThrottle } from '../auth/throttle.js'
import { topicTooLong, badWillTopic, hasNul, type SubscriptionCounter } from './limits.js'

import { DROP_TOPIC, dollarAllowed } from '../mqtt/reserved-topics.js'

/** Per-client facts from CONNECT that aedes does not keep (it replaces an empty client id, for one). */
export interface ClientInfo {
  ctx: ConnectionContext
  username?: string
  emptyClientId: boolean
  keepalive: number
  protocolVersion: number
  /** When CONNECT arrived (ms since the epoch): "connected since" in the admin API. */
  connectedAt: number
  /** v5: the keepalive the server imposes (Server Keep Alive), when it differs from the client's. */
  serverKeepAlive?: number
  /** v5: a refusal's specific reason code, sent instead of the one aedes derives (connack.ts). */
  connackReason?: number
  willQos?: number
  /** v5 Session Expiry Interval asked for in CONNECT (seconds). */
  sessionExpiry?: number
  /** v5: the client was authenticated by an enhanced-authentication exchange (enhanced-auth.ts). */
  enhancedAuth?: EnhancedAuthOutcome
  /** The CONNECT's Clean Start (v5) or Clean Session (3.1.x) flag. */
  cleanStart?: boolean
  /** v5: the Topic Alias Maximum the client announced (aliases it accepts from the server). */
  topicAliasMaximum?: number
  /** v5: PUBACK/PUBREC reason codes aedes cannot send, rewritten on the way out (ack-codes.ts). */
  acks?: AckCodes
  /** v5: the aliases of topics sent to a client that accepts them (topic-alias-out.ts), made with its CONNACK. */
  aliases?: OutgoingTopicAliases
}

/** MQTT 5 reason codes Midge sends itself. */
export const V5 = {
  NOT_AUTHORIZED: 0x87,
  KEEP_ALIVE_TIMEOUT: 0x8d,
  TOPIC_NAME_INVALID: 0x90,
  PACKET_TOO_LARGE: 0x95,
  RETAIN_NOT_SUPPORTED: 0x9a,
  QOS_NOT_SUPPORTED: 0x9b
} as const

export interface HookDeps {
  config: Config
  auth: AuthChain
  log: Logger
  contexts: WeakMap<Duplex, ConnectionContext>
  /** Counts publishes dropped by policy (for $SYS publish/messages/dropped). */
  onDropped?: (reason: string, client: Client | null, topic: string) => void
  /** max_subscriptions_per_client bookkeeping (limits.ts); released by the broker on 'unsubscribe'. */
  subscriptions?: SubscriptionCounter
  /** Connections an enhanced-authentication exchange allowed (enhanced-auth.ts), by stream. */
  enhancedAuth?: WeakMap<Duplex, EnhancedAuthOutcome>
  /**
   * Who would take a message of `bytes` on a topic: nobody (no session, connected or not, no bridge: a v5 publish
   * is acknowledged with 0x10), only persistent sessions away whose queues are all full (0x97), or someone ('room').
   * Undefined where it cannot be known (cluster mode: other nodes' subscribers).
   */
  subscribers?: (topic: string, bytes: number) => Promise<'none' | 'full' | 'room'>
  /** Drops the QoS 2 messages of a client id still awaiting PUBREL (the store's `cleanIncoming`), where it has one. */
  cleanIncoming?: (client: Client) => Promise<void>
}

type AuthError = Error & { returnCode: number }

function authError (returnCode: number, message: string): AuthError {
  return Object.assign(new Error(message), { returnCode })
}

/** aedes' hooks as Midge types them (aedes 2.0.0-beta.1 types/instance.d.ts, with Midge's error shapes). */
export type PreConnect = (client: Client, packet: ConnectPacket, cb: (err: Error | null, ok: boolean) => void) => void
export type Authenticate = (client: Client, username: Readonly<string | undefined>, password: Readonly<Buffer | undefined>, cb: (err: AuthError | null, ok: boolean | null) => void) => void
export type AuthorizePublish = (client: Client | null, packet: PublishPacket, cb: (err?: Error | null) => void) => void
export type AuthorizeSubscribe = (client: Client, sub: Subscription, cb: (err: Error | null, sub?: Subscription | null) => void) => void
/** Synchronous, once per message delivered to a client: the hot path. */
export type AuthorizeForward = (client: Client, packet: AedesPublishPacket) => AedesPublishPacket | null
export type Published = (packet: AedesPublishPacket, client: Client | null, cb: (err?: Error | null) => void) => void
/** A stage that runs before the rest of a hook (`next`): built once at start-up, so no closure per call. */
export type Wrap<H> = (next: H) => H

/**
 * Midge's own stages of the aedes hooks; broker/hook-stages.ts puts them in order with the other modules' stages.
 * Where a hook has several (publish, subscribe), each is one rule of it, in the order they run.
 */
export interface Hooks {
  clientInfo: WeakMap<Client, ClientInfo>
  /** The will topic's checks; the connection's facts kept (ClientInfo). */
  preConnect: PreConnect
  /** Client id rules, password file / plug-ins (auth/connect.ts), will screen, resumed queue, clean start's QoS 2. */
  authenticate: Authenticate
  publish: {
    /** max_topic_length, U+0000, message_size_limit, retain_available, max_qos, payload format (v5 0x99). */
    limits: Wrap<AuthorizePublish>
    /** `$SYS/` and `$MIDGE` are not the clients' to publish to: acknowledged and dropped (mqtt/reserved-topics.ts). */
    dollarTopics: Wrap<AuthorizePublish>
    /** The auth chain's publish check; v5 PUBACK codes 0x87, 0x10, 0x97. */
    acl: AuthorizePublish
  }
  subscribe: {
    /** `$MIDGE` filters refused (mqtt/reserved-topics.ts). */
    dollarTopics: Wrap<AuthorizeSubscribe>
    /** max_topic_length, U+0000, max_qos, deny_bare_wildcard_subscription. */
    limits: Wrap<AuthorizeSubscribe>
    /** The auth chain's subscribe check (v5 0x80 / 0x87), max_subscriptions_per_client. */
    acl: AuthorizeSubscribe
  }
  /** Read ACL, QoS clamp, every matching v5 Subscription Identifier, the client's Maximum Packet Size. */
  authorizeForward: AuthorizeForward
  /** What a v5 client's CONNACK must say beyond aedes' version of it; undefined for 3.1/3.1.1 clients. */
  connackAmendment: (client: Client) => ConnackAmendment | undefined
}

export function createHooks (deps: HookDeps): Hooks {
  const { config, auth, log, contexts } = deps
  const limits = config.limits
  const clientInfo = new WeakMap<Client, ClientInfo>()
  const throttle = new LoginThrottle()

  const dropPublish = (client: Client | null, packet: PublishPacket, reason: string): void => {
    log.info({ clientId: client?.id, topic: packet.topic, reason }, 'publish dropped')
    deps.onDropped?.(reason, client, packet.topic)
    // 3.1.1 has no negative acknowledgement: the publisher still gets its PUBACK/PUBREC (as from mosquitto) and the
    // message goes nowhere. aedes would close the connection on an authorizePublish error instead.
    packet.topic = DROP_TOPIC
    packet.retain = false
  }

  const hooks: Hooks = {
    clientInfo,

    preConnect (client, packet, cb) {
      const ctx = contexts.get(client.conn as Duplex)
      if (!ctx) { cb(new Error('connection without context'), false); return }
      // max_topic_length covers the will topic: the connection closes before anything is stored
      if (packet.will && topicTooLong(packet.will.topic, limits.maxTopicLength)) {
        cb(new Error(`will topic exceeds max_topic_length ${limits.maxTopicLength}`), false)
        return
      }
      const badWill = packet.will ? badWillTopic(packet.will.topic) : undefined
      if (badWill !== undefined) { cb(new Error(badWill), false); return }
      const info: ClientInfo = {
        ctx,
        username: packet.username,
        emptyClientId: !packet.clientId,
        keepalive: packet.keepalive ?? 0,
        protocolVersion: packet.protocolVersion ?? 4,
        connectedAt: Date.now()
      }
      if (packet.will) info.willQos = packet.will.qos ?? 0
      const enhanced = deps.enhancedAuth?.get(client.conn as Duplex)
      if (enhanced !== undefined) info.enhancedAuth = enhanced
      clientInfo.set(client, info)
      info.cleanStart = packet.clean !== false
      if (info.protocolVersion === 5) {
        info.acks = new AckCodes()
        info.topicAliasMaximum = (packet.properties as { topicAliasMaximum?: number } | undefined)?.topicAliasMaximum
        info.sessionExpiry = (packet.properties as { sessionExpiryInterval?: number } | undefined)?.sessionExpiryInterval ?? 0
        // a v5 client over max_keepalive (or with none) is told the limit, not refused, as mosquitto 2.0 does;
        // aedes times the connection out from the CONNECT's keepalive, so that is where the limit goes
        if (limits.maxKeepalive > 0 && (info.keepalive === 0 || info.keepalive > limits.maxKeepalive)) {
          info.serverKeepAlive = limits.maxKeepalive
          packet.keepalive = limits.maxKeepalive
        }
      }
      cb(null, true)
    },

    authenticate (client, username, password, cb) {
      const info = clientInfo.get(client)
      if (!info) { cb(authError(3, 'no connection context'), false); return }
      // [MQTT-3.1.3-8] a zero-length client id needs clean session
      if (info.protocolVersion < 5 && info.emptyClientId && (!client.clean || info.protocolVersion === 3)) {
        cb(authError(2, 'zero-length client id without clean session'), false)
        return
      }
      // max_keepalive: CONNACK 2 for 3.1.x clients, as mosquitto 2.0 does (aedes' keepaliveLimit answers 6, undefined in 3.1.1)
      if (info.protocolVersion < 5 && limits.maxKeepalive > 0 && info.keepalive > limits.maxKeepalive) {
        cb(authError(2, `keepalive ${info.keepalive} exceeds max_keepalive ${limits.maxKeepalive}`), false)
        return
      }
      // max_qos covers the will: a v5 client hears why (0x9B), as from mosquitto
      if (info.willQos !== undefined && info.willQos > info.ctx.listener.maxQos) {
        info.connackReason = V5.QOS_NOT_SUPPORTED
        cb(authError(5, `will QoS ${info.willQos} exceeds max_qos ${info.ctx.listener.maxQos}`), false)
        return
      }
      // allow_zero_length_clientid, auto_id_prefix, clientid_prefixes, use_username_as_clientid (auth/client-id.ts)
      const id = clientIdBeforeAuth({ clientId: info.emptyClientId ? '' : client.id, listener: info.ctx.listener, prefixes: config.clientidPrefixes })
      if (!id.ok) { cb(authError(id.returnCode, id.reason), false); return }
      if (id.clientId !== undefined) client.id = id.clientId
      // TLS identity as username and failed-login throttling live in auth/connect.ts
      // a client that passed enhanced authentication is not asked for a password as well (mosquitto neither)
      const checked: Promise<ConnectCheck> = info.enhancedAuth !== undefined
        ? Promise.resolve({ ok: true, ...(info.enhancedAuth.username !== undefined ? { username: info.enhancedAuth.username } : {}) })
        : checkConnect({ auth, throttle, log }, { clientId: client.id, username: username ?? undefined, password: password ?? undefined, ctx: info.ctx })
      checked.then(d => {
        const late = d.ok ? clientIdAfterAuth(info.ctx.listener, d.username ?? info.username) : undefined
        if (late !== undefined && !late.ok) d = late
        else if (late?.ok === true && late.clientId !== undefined) client.id = late.clientId
        if (d.ok) {
          if (d.username !== undefined) info.username = d.username
          // a will this client may not publish is never stored (auth/connect.ts); most clients have none
          if (info.willQos === undefined) { admitted(client, info, cb); return }
          screenWill(auth, log, client, info.username, info.ctx).then(() => admitted(client, info, cb), (err: Error) => {
            log.error({ clientId: client.id, err: err.message }, 'will authorisation failed with an error')
            cb(authError(3, 'authentication error'), false)
          })
          return
        }
        log.info({ clientId: client.id, listener: info.ctx.listener.id, remoteAddress: info.ctx.remoteAddress, username, reason: d.reason }, 'connection refused')
        cb(authError(d.returnCode, d.reason), false)
      }, (err: Error) => {
        log.error({ clientId: client.id, err: err.message }, 'authentication failed with an error')
        cb(authError(3, 'authentication error'), false)
      })
    },

    publish: {
      limits: next => (client, packet, cb) => {
        // a will goes out as a PUBLISH with the will's properties, but Will Delay Interval is a CONNECT (will)
        // property: aedes leaves it in, and a v5 subscriber rejects a PUBLISH that carries it as malformed
        const props = packet.properties as { willDelayInterval?: number } | undefined
        if (props?.willDelayInterval !== undefined) delete props.willDelayInterval
        if (client === null) { cb(null); return } // wills of vanished clients: checked when they connected
        // an error here makes aedes close the connection: 3.1.1 has no way to refuse one PUBLISH
        if (topicTooLong(packet.topic, limits.maxTopicLength)) {
          cb(new Error(`topic exceeds max_topic_length ${limits.maxTopicLength}`))
          return
        }
        if (hasNul(packet.topic)) { cb(new Error('U+0000 in topic')); return }
        if (limits.messageSizeLimit > 0 && packet.payload.length > limits.messageSizeLimit) {
          cb(new Error(`payload of ${packet.payload.length} bytes exceeds message_size_limit ${limits.messageSizeLimit}`))
          return
        }
        const info = clientInfo.get(client)
        const v5 = info?.protocolVersion === 5
        if (packet.retain && !limits.retainAvailable) {
          // a v5 client was told in its CONNACK (Retain Available 0): DISCONNECT 0x9A [MQTT-3.3.1-7]
          if (v5) { disconnectV5(client, V5.RETAIN_NOT_SUPPORTED, 'retain is not available'); return }
          cb(new Error('retained messages are not available (retain_available false)'))
          return
        }
        if (info !== undefined && packet.qos > info.ctx.listener.maxQos) {
          // max_qos: the client is disconnected, as from mosquitto; a v5 client hears why (0x9B) [MQTT-3.2.2-11]
          if (v5) { disconnectV5(client, V5.QOS_NOT_SUPPORTED, `QoS ${packet.qos} is above max_qos`); return }
          cb(new Error(`QoS ${packet.qos} exceeds max_qos ${info.ctx.listener.maxQos}`))
          return
        }
        // Payload Format Indicator 1 promises UTF-8: a v5 publish that breaks it is refused, PUBACK/PUBREC 0x99
        // (mosquitto 2.0.11 does not check, and routes it)
        if (v5 && (packet.properties as { payloadFormatIndicator?: boolean } | undefined)?.payloadFormatIndicator === true && typeof packet.payload !== 'string' && !isUtf8(packet.payload)) {
          log.info({ clientId: client.id, topic: packet.topic, reason: 'payload format invalid' }, 'publish refused')
          deps.onDropped?.('payload format invalid', client, packet.topic)
          if (packet.qos > 0 && packet.messageId !== undefined) info?.acks?.set(packet.messageId, PAYLOAD_FORMAT_INVALID)
          cb(new Error(''))
          return
        }
        next(client, packet, cb)
      },

      dollarTopics: next => (client, packet, cb) => {
        if (client !== null && !dollarAllowed('publish', packet.topic)) {
          dropPublish(client, packet, 'reserved topic')
          cb(null)
          return
        }
        next(client, packet, cb)
      },

      acl (client, packet, cb) {
        if (client === null) { cb(null); return }
        const info = clientInfo.get(client)
        if (!info) { cb(null); return }
        const req: AuthorizeRequest = {
          clientId: client.id, username: info.username, conn: info.ctx, action: 'publish', topic: packet.topic, qos: packet.qos, retain: packet.retain
        }
        // an ACL file (or no ACL) answers at once: no promise chain per message. The verdict still goes on in a
        // microtask, as a promise's would: given synchronously it completes the PUBLISH inside aedes' parse of the
        // batch that holds it, and a publisher whose batch also fed an offline persistent session was never read
        // again (05-session "CONNACK before any message")
        const now = auth.authorizeNow(req)
        if (now !== undefined) { queueMicrotask(() => publishVerdict(client, info, packet, now, cb)); return }
        auth.authorize(req).then(ok => publishVerdict(client, info, packet, ok, cb), (err: Error) => cb(err))
      }
    },

    subscribe: {
      dollarTopics: next => (client, sub, cb) => {
        if (!dollarAllowed('subscribe', sub.topic)) { cb(null, null); return }
        next(client, sub, cb)
      },

      limits: next => (client, sub, cb) => {
        // an over-long filter closes the connection, as an over-long PUBLISH topic does
        if (topicTooLong(sub.topic, limits.maxTopicLength)) {
          cb(new Error(`topic filter exceeds max_topic_length ${limits.maxTopicLength}`))
          return
        }
        if (hasNul(sub.topic)) { cb(new Error('U+0000 in topic filter')); return }
        const info = clientInfo.get(client)
        if (info !== undefined) {
          // [MQTT-3.8.4-6] granted at most max_qos
          if (sub.qos > info.ctx.listener.maxQos) sub.qos = info.ctx.listener.maxQos
          // deny_bare_wildcard_subscription (Midge extension): test.mosquitto.org refuses `#` to anonymous clients
          const bare = info.ctx.listener.denyBareWildcard
          if (bare !== undefined && sub.topic === '#' && (bare === 'all' || info.username === undefined)) {
            log.info({ clientId: client.id, topic: sub.topic }, 'subscription refused: deny_bare_wildcard_subscription')
            cb(null, null)
            return
          }
        }
        next(client, sub, cb)
      },

      acl (client, sub, cb) {
        const info = clientInfo.get(client)
        if (!info) { cb(null, sub); return }
        auth.decide({
          clientId: client.id, username: info.username, conn: info.ctx, action: 'subscribe', topic: sub.topic, qos: sub.qos, retain: false
        }).then(d => {
          const ok = d.ok
          if (!d.ok) {
            log.info({ clientId: client.id, topic: sub.topic }, 'subscription refused')
            if (info.protocolVersion === 5 && d.by?.subscriptionRefusal === 'unspecified') { refuseUnspecified(client, () => cb(null, null)); return }
          }
          // max_subscriptions_per_client: SUBACK 0x80 for filters beyond the limit
          if (ok && deps.subscriptions && !deps.subscriptions.reserve(client, sub.topic)) {
            log.info({ clientId: client.id, topic: sub.topic }, `subscription refused: max_subscriptions_per_client (${limits.maxSubscriptionsPerClient}) reached`)
            cb(null, null)
            return
          }
          cb(null, ok ? sub : null)
        }, (err: Error) => cb(err))
      }
    },

    authorizeForward: (_c, p) => p,

    connackAmendment (client) {
      const info = clientInfo.get(client)
      if (info === undefined || info.protocolVersion !== 5) return undefined
      const l = info.ctx.listener
      const a: ConnackAmendment = { topicAliasMaximum: l.maxTopicAlias }
      if (info.connackReason !== undefined) a.reasonCode = info.connackReason
      if (l.maxQos < 2) a.maximumQoS = l.maxQos as 0 | 1
      if (!limits.retainAvailable) a.retainAvailable = false
      if (info.serverKeepAlive !== undefined) a.serverKeepAlive = info.serverKeepAlive
      if (info.enhancedAuth !== undefined) {
        a.authenticationMethod = info.enhancedAuth.method
        if (info.enhancedAuth.data !== undefined) a.authenticationData = info.enhancedAuth.data
      }
      return a
    }
  }

  /**
   * [MQTT-3.1.2-4] [MQTT-3.2.2-2] A v5 CONNECT with Clean Start 0 resumes the session it finds, queued messages
   * included, whatever Session Expiry Interval it asks for: that interval only says how long the session outlives
   * this connection. aedes marks a session with interval 0 `clean` at CONNECT and so discards its queue (it
   * restores the subscriptions and says Session Present 1). The client counts as persistent until aedes has sent
   * the stored queue (`connected`); then the session is clean again and ends with the connection.
   */
  const resumeQueue = (client: Client, info: ClientInfo): void => {
    if (info.protocolVersion !== 5 || info.cleanStart !== false || !client.clean) return
    const c = clientInternals(client)
    c.clean = false
    c.once('connected', () => { c.clean = true })
  }

  /**
   * The CONNECT passed every check: a resumed v5 queue kept, and aedes goes on. [MQTT-3.1.2-4] [MQTT-3.1.2-6] A
   * clean start discards the previous session, including the QoS 2 messages received from the client and not yet
   * released. aedes keeps those (it never calls the store's `cleanIncoming`): a new QoS 2 PUBLISH that reuses such a
   * packet identifier was taken for a resend, acknowledged and never routed. The Paho suite's tests lost messages
   * so, after a test that left messages unreleased under the same client id. No promise where nothing waits: this
   * runs for every CONNECT.
   */
  const admitted = (client: Client, info: ClientInfo, cb: Parameters<Authenticate>[3]): void => {
    resumeQueue(client, info)
    if (info.cleanStart === false || deps.cleanIncoming === undefined) { cb(null, true); return }
    deps.cleanIncoming(client).then(() => cb(null, true), (err: Error) => {
      log.error({ clientId: client.id, err: err.message }, 'could not discard the QoS 2 state of the previous session')
      cb(authError(3, 'store error'), false)
    })
  }

  const publishVerdict = (client: Client, info: ClientInfo, packet: PublishPacket, ok: boolean, cb: (err?: Error | null) => void): void => {
    if (ok) { accepted(client, info, packet, cb); return }
    // v5 can refuse one PUBLISH: aedes answers a QoS 1/2 one with PUBACK/PUBREC 0x87 and keeps the connection.
    // The error has no message, so the acknowledgement carries no Reason String (aedes makes one of the
    // message), as from mosquitto 2.0.11: it would only repeat the code, and some v5 clients (the Paho
    // interoperability suite's) cannot parse acknowledgements with properties.
    if (info.protocolVersion === 5) {
      log.info({ clientId: client.id, topic: packet.topic, reason: 'not authorised' }, 'publish refused')
      deps.onDropped?.('not authorised', client, packet.topic)
      cb(new Error(''))
      return
    }
    dropPublish(client, packet, 'not authorised')
    cb(null)
  }

  /**
   * An authorised publish goes on; a v5 client's QoS 1/2 one that no subscription matches is acknowledged with
   * 0x10 (No matching subscribers), as from mosquitto 2.0.11 (which sends it in PUBACK only), and one that only
   * persistent sessions away would take, each with a full queue, with 0x97 (Quota exceeded): it reaches nobody.
   */
  const accepted = (client: Client, info: ClientInfo, packet: PublishPacket, cb: (err?: Error | null) => void): void => {
    const acks = info.acks
    const who = deps.subscribers
    if (acks === undefined || who === undefined || packet.qos === 0 || packet.messageId === undefined) { cb(null); return }
    const id = packet.messageId
    who(packet.topic, packet.payload.length).then(verdict => {
      if (verdict === 'none') acks.set(id, NO_MATCHING_SUBSCRIBERS)
      else if (verdict === 'full') acks.set(id, QUOTA_EXCEEDED)
      cb(null)
    }, (err: Error) => {
      log.warn({ clientId: client.id, topic: packet.topic, err: err.message }, 'could not look up subscribers: acknowledged with 0x00')
      cb(null)
    })
  }

  const disconnectV5 = (client: Client, reasonCode: number, why: string): void => {
    log.info({ clientId: client.id, reasonCode }, `Client ${client.id} disconnected: ${why}.`)
    // the PUBLISH is not answered: the connection ends with this DISCONNECT [MQTT-4.13.2-1]
    client.disconnect({ reasonCode })
  }

  const checkRead = auth.checksReceive
  hooks.authorizeForward = (client, packet) => {
    if (checkRead) {
      const info = clientInfo.get(client)
      if (info && !auth.authorizeReceive(info.ctx.listener, { clientId: client.id, username: info.username, topic: packet.topic })) return null
    }
    if (packet.qos > 0) clampQos(client, packet)
    // a routed message (a retained one sent on SUBSCRIBE has no brokerId: it answers that one subscription)
    if (packet.brokerId && clientInternals(client).version === 5) withAllSubscriptionIds(client, packet)
    // [MQTT-3.1.2-25] never more than the client's Maximum Packet Size: the message is dropped for that client
    const max = clientInternals(client).maximumPacketSize
    if (max !== undefined && tooLarge(packet, max)) {
      deps.onDropped?.('larger than the client\'s maximum packet size', client, packet.topic)
      return null
    }
    return packet
  }
  return hooks
}

/**
 * [MQTT-3.8.4-6] / [MQTT-3.3.5-1]: deliver at min(publish QoS, highest QoS among the client's matching subscriptions).
 * aedes 1.2.0 only downgrades when a subscription's filter equals the topic exactly, so a QoS 2 publish reached a
 * QoS 1 `w/+` subscriber at QoS 2 (test: 02-subpub "wildcard subscription QoS caps delivery QoS").
 * The packet here is a fresh copy per delivery, so changing its qos is safe.
 */
function clampQos (client: Client, packet: AedesPublishPacket): void {
  const subs = subscriptionsOf(client)
  const max = maxMatchingQos(subs, packet.topic, packet.qos)
  if (max >= 0 && max < packet.qos) packet.qos = max as 0 | 1 | 2
}

/**
 * [MQTT-3.3.4-3] A message matching several of a v5 client's subscriptions goes out once (Midge's duplicate filter
 * keeps the first copy, delivery.ts) and must carry the Subscription Identifier of each of them: aedes puts only
 * the identifier of the subscription whose copy that is. The properties object is shared between the copies of
 * a message, so it is replaced, not changed.
 */
function withAllSubscriptionIds (client: Client, packet: AedesPublishPacket): void {
  const ids = matchingSubscriptionIds(subscriptionsOf(client), packet.topic)
  if (ids.length === 0) return
  const p = packet as { properties?: Record<string, unknown> }
  const props = p.properties
  if (ids.length === 1 && props?.subscriptionIdentifier === ids[0]) return
  p.properties = { ...props, subscriptionIdentifier: ids.length === 1 ? ids[0] : ids }
}

/** Whether the v5 PUBLISH would be more than `max` bytes on the wire (encoded only when it has properties). */
function tooLarge (packet: AedesPublishPacket, max: number): boolean {
  const props = (packet as { properties?: object }).properties
  if (props !== undefined) {
    return mqttPacket.generate({ ...packet, cmd: 'publish', messageId: packet.qos > 0 ? 1 : undefined } as never, { protocolVersion: 5 }).length > max
  }
  // topic length + topic + packet id + empty property length + payload, after the type byte and remaining length
  const remaining = 2 + Buffer.byteLength(packet.topic) + (packet.qos > 0 ? 2 : 0) + 1 + packet.payload.length
  const lengthBytes = remaining < 128 ? 1 : remaining < 16_384 ? 2 : remaining < 2_097_152 ? 3 : 4
  return 1 + lengthBytes + remaining > max
}
