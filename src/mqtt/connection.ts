/**
 * What is known of a connection before its MQTT CONNECT. The listeners make it, the broker keeps it per stream,
 * and the auth chain and the admin API read it: a neutral module, so that none of them depends on another for it.
 */
import type { ListenerConfig } from '../config/schema.js'

/** What the broker knows about a connection before MQTT CONNECT: kept in a WeakMap keyed by the stream. */
export interface ConnectionContext {
  listener: ListenerConfig
  remoteAddress?: string
  remotePort?: number
  /** Set on TLS listeners that asked for a client certificate. */
  tlsPeer?: { authorized: boolean, subject?: string, commonName?: string, authorizationError?: string, /** TLS-PSK: the identity the handshake proved */ pskIdentity?: string }
}
