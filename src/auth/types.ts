import type { ConnectionContext } from '../listeners/types.js'
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

export interface AuthProvider {
  readonly name: string
  /**
   * How a v5 client hears that this provider denied its subscription: 'unspecified' (SUBACK 0x80, what 3.1.1
   * clients get) or, by default, 'not-authorized' (0x87).
   */
  readonly subscriptionRefusal?: 'unspecified' | 'not-authorized'
  authenticate?(req: AuthenticateRequest): Promise<AuthResult>
  authorize?(req: AuthorizeRequest): Promise<AuthResult>
  /** Synchronous: aedes' authorizeForward is synchronous. Called for every delivered message. */
  authorizeReceive?(req: ReceiveRequest): AuthResult
  /** SIGHUP. A provider whose files are broken keeps its old rules and throws to have the reason logged. */
  reload?(): Promise<void>
  close?(): Promise<void>
}

export type AuthProviderFactory = (auth: AuthConfig, log: Logger) => Promise<AuthProvider | undefined>
