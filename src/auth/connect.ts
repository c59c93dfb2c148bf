/**
 * The CONNECT credential check around the auth chain: the TLS identity (use_identity_as_username /
 * use_subject_as_username) and failed-login throttling per client address.
 */
import type { Logger } from '../logging/logger.js'
import type { ConnectionContext } from '../mqtt/connection.js'
import type { AuthChain, ConnectDecision } from './chain.js'
import { addressKey, type LoginThrottle } from './throttle.js'
import { dollarAllowed } from '../mqtt/reserved-topics.js'

export type ConnectCheck = ConnectDecision & { /** the username the client acts as (from its certificate) */ username?: string }

export interface ConnectCheckDeps {
  auth: AuthChain
  throttle?: LoginThrottle
  log: Logger
}

export interface ConnectCheckRequest {
  clientId: string
  username?: string
  password?: Buffer
  ctx: ConnectionContext
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

export async function checkConnect (deps: ConnectCheckDeps, req: ConnectCheckRequest): Promise<ConnectCheck> {
  const tls = req.ctx.listener.tls
  // TLS-PSK: the handshake proved the identity; with use_identity_as_username it is the username (mosquitto)
  const pskIdentity = req.ctx.tlsPeer?.pskIdentity
  if (pskIdentity !== undefined && tls?.useIdentityAsUsername) return { ok: true, username: pskIdentity }
  if (pskIdentity === undefined && tls && (tls.useIdentityAsUsername || tls.useSubjectAsUsername)) {
    // mosquitto: the certificate is the credential; a username/password in CONNECT is ignored and the
    // password_file is not used for this listener. No verified certificate: CONNACK 4 (bad user name or password).
    const peer = req.ctx.tlsPeer
    if (!peer?.authorized) {
      return { ok: false, returnCode: 4, reason: peer?.authorizationError ? `client certificate not accepted: ${peer.authorizationError}` : 'no client certificate' }
    }
    const name = tls.useSubjectAsUsername ? peer.subject : peer.commonName
    if (!name) return { ok: false, returnCode: 4, reason: 'client certificate has no subject common name' }
    return { ok: true, username: name }
  }

  const addr = req.ctx.remoteAddress === undefined ? undefined : addressKey(req.ctx.remoteAddress)
  const throttled = deps.throttle !== undefined && addr !== undefined && req.username !== undefined
  if (throttled) {
    const v = deps.throttle!.reserve(addr)
    if ('refuse' in v) return { ok: false, returnCode: 5, reason: 'too many failed logins from this address; refused without checking' }
    if (v.wait > 0) await sleep(v.wait)
  }
  let d: ConnectDecision
  try {
    d = await deps.auth.authenticate({ clientId: req.clientId, username: req.username, password: req.password, conn: req.ctx })
  } catch (err) {
    if (throttled) deps.throttle!.release(addr)
    throw err
  }
  if (throttled) {
    if (d.ok) deps.throttle!.success(addr)
    else if (d.returnCode === 5) deps.throttle!.failure(addr)
    else deps.throttle!.release(addr)
  }
  return d
}

interface WillHolder { id: string, _will?: { topic: string, qos: 0 | 1 | 2, retain: boolean } }

/**
 * A will the ACL does not let this client publish is dropped at CONNECT. aedes checks a will when it fires, but
 * a will persisted before a crash fires on restart with no client (aedes `_clearWills` passes client null), when
 * the username is no longer known: so it must never be stored. Uses aedes' private `client._will` (set before
 * authenticate, stored after it): see test 09-acl "a will on a denied topic".
 */
export async function screenWill (auth: AuthChain, log: Logger, client: unknown, username: string | undefined, ctx: ConnectionContext): Promise<void> {
  const c = client as WillHolder
  const will = c._will
  if (!will) return
  const ok = dollarAllowed('will', will.topic) && await auth.authorize({ clientId: c.id, username, conn: ctx, action: 'publish', topic: will.topic, qos: will.qos, retain: will.retain })
  if (!ok) {
    c._will = undefined
    log.info({ clientId: c.id, topic: will.topic }, 'will dropped: not authorised')
  }
}
