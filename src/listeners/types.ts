import type { Duplex } from 'node:stream'
import type { AddressInfo } from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ListenerConfig, Transport } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import type { ConnectionContext } from '../mqtt/connection.js'

export type { Transport }
// defined beside the MQTT types, where the auth chain reads it without depending on the listeners
export type { ConnectionContext } from '../mqtt/connection.js'

export type ConnectionHandler = (stream: Duplex, ctx: ConnectionContext, req?: IncomingMessage) => void

/** Plain HTTP requests on a websockets listener (metrics, health, admin, console) go here. */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse, listener: ListenerConfig) => void

export interface ListenerDeps {
  onConnection: ConnectionHandler
  log: Logger
  http?: HttpHandler
  /** Largest WebSocket frame accepted (bytes). */
  maxPayload?: number
  /**
   * Asked for every accepted TCP connection before anything else happens on it (before a TLS handshake or an HTTP
   * request is read): false destroys the socket at once. max_connection_rate lives here.
   */
  admit?: (remoteAddress: string | undefined, listener: ListenerConfig) => boolean
}

export interface Listener {
  readonly config: ListenerConfig
  /** Resolves with the bound address (port 0 -> the real port); rejects with MIDGE_ERR_LISTEN. */
  listen (): Promise<AddressInfo>
  /** Stops accepting; live sessions are the broker's job. */
  close (): Promise<void>
  /**
   * SIGHUP: reread certfile/keyfile/cafile for new connections (mosquitto does the same, so certificates can be
   * renewed without a restart). Throws, keeping the current certificate, when the new files fail the start-up checks.
   */
  reloadTls? (): void
}

export type ListenerFactory = (cfg: ListenerConfig, deps: ListenerDeps) => Listener
