/**
 * The client id rules of mosquitto 2.0's CONNECT handling, in its order:
 * - before authentication: an empty client id is refused (CONNACK 2) with `allow_zero_length_clientid false`,
 *   otherwise it becomes `auto_id_prefix` + a UUID; a client id without `clientid_prefixes` is refused (CONNACK 5);
 * - after authentication: `use_username_as_clientid` replaces the client id with the username (the TLS identity
 *   when the certificate is the username), and refuses a client without one (CONNACK 5).
 * The broker applies the new id before the session is looked up, so it also decides which session the client gets.
 */
import { randomUUID } from 'node:crypto'
import type { ListenerConfig } from '../config/schema.js'

export type ClientIdDecision = { ok: true, clientId?: string } | { ok: false, returnCode: 2 | 5, reason: string }

export interface ClientIdRequest {
  /** The client id of CONNECT ('' when the client sent none). */
  clientId: string
  listener: ListenerConfig
  /** `clientid_prefixes` (global). */
  prefixes?: string
}

export function clientIdBeforeAuth (req: ClientIdRequest): ClientIdDecision {
  const auth = req.listener.auth
  let id: string | undefined
  if (req.clientId === '') {
    if (!auth.allowZeroLengthClientid) return { ok: false, returnCode: 2, reason: 'zero-length client id refused (allow_zero_length_clientid false)' }
    id = `${auth.autoIdPrefix}${randomUUID()}`
  }
  // mosquitto checks the prefix on the id the client sent; a generated id has none unless auto_id_prefix gives it
  const effective = id ?? req.clientId
  if (req.prefixes !== undefined && !effective.startsWith(req.prefixes)) {
    return { ok: false, returnCode: 5, reason: `client id does not start with clientid_prefixes "${req.prefixes}"` }
  }
  return id === undefined ? { ok: true } : { ok: true, clientId: id }
}

export function clientIdAfterAuth (listener: ListenerConfig, username: string | undefined): { ok: true, clientId?: string } | { ok: false, returnCode: 5, reason: string } {
  if (!listener.useUsernameAsClientid) return { ok: true }
  if (username === undefined || username === '') return { ok: false, returnCode: 5, reason: 'no username to use as client id (use_username_as_clientid true)' }
  return { ok: true, clientId: username }
}
