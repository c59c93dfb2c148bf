import type { ConnectionContext } from '../mqtt/connection.js'
import type { AuthConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'

/** mosquitto's chain semantics: allow/deny end the chain, defer asks the next provider. */
export type AuthResult = 'allow' | 'deny' | 'defer'

export interface AuthenticateRequest {
  clientId: string
  username?: string
  password?: Buffer
  conn: ConnectionContext
}

export interface AuthorizeRequest {
  clientId: string
  username?: string
  conn: ConnectionContext
  action: 'publish' | 'subscribe'
  topic: string
  qos: 0 | 1 | 2
  retain: boolean
}

export interface ReceiveRequest {
  clientId: string
  username?: string
  topic: string
}

/**
 * MQTT 5 enhanced authentication (AUTH packets, spec 4.12): the first step of one exchange. A CONNECT with an
 * Authentication Method starts one, and so does a connected client's re-authentication (AUTH 0x19).
 */
export interface EnhancedAuthRequest {
  /** The client id of the CONNECT (empty when the server is to assign one). */
  clientId: string
  username?: string
  password?: Buffer
  method: string
  /** Authentication Data of the CONNECT (or of the re-authenticating AUTH). */
  data?: Buffer
  conn: ConnectionContext
  /** True for a re-authentication of a connected client. */
  reauthenticate: boolean
  /** Aborted when the connection closes before the exchange ends. */
  signal: AbortSignal
}

/**
 * One answer of a plug-in in an exchange: `continue` sends the client AUTH 0x18 with `data` and hands the
 * client's next Authentication Data to `next`; `allow` ends it (CONNACK 0x00, or AUTH 0x00 on a re-authentication,
 * with `data`; `username`, at CONNECT only, is the name the client acts as for the ACL); `deny` refuses (0x87);
 * `defer` (first answer only) leaves the method to the next plug-in, and 0x8C follows when none takes it.
 */
export type EnhancedAuthAnswer =
  | { result: 'continue', data?: Buffer, next: (data: Buffer | undefined) => Promise<EnhancedAuthAnswer> }
  | { result: 'allow', data?: Buffer, username?: string }
  | { result: 'deny' }
  | { result: 'defer' }

export interface AuthProvider {
  readonly name: string
  /** MQTT 5 enhanced authentication; a client that uses it is not asked `authenticate` (as in mosquitto). */
  enhancedAuth?(req: EnhancedAuthRequest): Promise<EnhancedAuthAnswer>
  /**
   * How a v5 client hears that this provider denied its subscription: 'unspecified' (SUBACK 0x80, what 3.1.1
   * clients get) or, by default, 'not-authorized' (0x87).
   */
  readonly subscriptionRefusal?: 'unspecified' | 'not-authorized'
  authenticate?(req: AuthenticateRequest): Promise<AuthResult>
  authorize?(req: AuthorizeRequest): Promise<AuthResult>
  /**
   * The same answer as `authorize`, for a provider that needs no I/O to give it. Every PUBLISH is authorised, and
   * a promise per message is a microtask and some garbage on the hot path.
   */
  authorizeSync?(req: AuthorizeRequest): AuthResult
  /** Synchronous: aedes' authorizeForward is synchronous. Called for every delivered message. */
  authorizeReceive?(req: ReceiveRequest): AuthResult
  /** SIGHUP. A provider whose files are broken keeps its old rules and throws to have the reason logged. */
  reload?(): Promise<void>
  close?(): Promise<void>
}

export type AuthProviderFactory = (auth: AuthConfig, log: Logger) => Promise<AuthProvider | undefined>
