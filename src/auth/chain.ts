/**
 * The auth chain: global providers, or the listener's own with per_listener_settings. A missing method means
 * the provider ignores that event; if every provider defers, the answer is deny. With no provider at all,
 * `allow_anonymous` decides who may connect and every action is allowed (mosquitto without password/ACL files).
 */
import type { AuthConfig, Config, ListenerConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import type { AuthProvider, AuthenticateRequest, AuthorizeRequest, ReceiveRequest, AuthResult, EnhancedAuthAnswer, EnhancedAuthRequest } from './types.js'
import { authProviderFactories } from './index.js'

export type ConnectDecision = { ok: true } | { ok: false, returnCode: 4 | 5, reason: string }
export type AuthorizeDecision = { ok: true } | { ok: false, by?: AuthProvider }

class ProviderSet {
  readonly hasAuthenticate: boolean
  readonly hasAuthorize: boolean
  /** Every provider that authorises answers without waiting (or none authorises). */
  private readonly authorizesNow: boolean
  readonly receivers: AuthProvider[]
  readonly enhanced: AuthProvider[]

  constructor (readonly auth: AuthConfig, readonly providers: AuthProvider[]) {
    this.hasAuthenticate = providers.some(p => p.authenticate)
    this.enhanced = providers.filter(p => p.enhancedAuth)
    this.hasAuthorize = providers.some(p => p.authorize)
    this.authorizesNow = providers.every(p => !p.authorize || p.authorizeSync)
    this.receivers = providers.filter(p => p.authorizeReceive)
  }

  async authenticate (req: AuthenticateRequest): Promise<ConnectDecision> {
    if (req.username === undefined) {
      // [MQTT-3.1.2-22] a password without a user name is malformed
      if (req.password !== undefined) return { ok: false, returnCode: 4, reason: 'password without username' }
      return this.auth.allowAnonymous ? { ok: true } : { ok: false, returnCode: 5, reason: 'anonymous access refused' }
    }
    if (!this.hasAuthenticate) {
      return this.auth.allowAnonymous ? { ok: true } : { ok: false, returnCode: 5, reason: 'no password_file: only anonymous clients could connect, and they are refused' }
    }
    for (const p of this.providers) {
      if (!p.authenticate) continue
      const r = await p.authenticate(req)
      if (r === 'allow') return { ok: true }
      if (r === 'deny') return { ok: false, returnCode: 5, reason: `refused by ${p.name}` }
    }
    return { ok: false, returnCode: 5, reason: 'no provider accepted the credentials' }
  }

  async enhancedAuth (req: EnhancedAuthRequest): Promise<EnhancedAuthAnswer> {
    for (const p of this.enhanced) {
      const a = await p.enhancedAuth!(req)
      if (a.result !== 'defer') return a
    }
    return { result: 'defer' }
  }

  async authorize (req: AuthorizeRequest): Promise<boolean> {
    return (await this.decide(req)).ok
  }

  /** The verdict and, for a denial, the provider that denied (none when every provider deferred). */
  async decide (req: AuthorizeRequest): Promise<AuthorizeDecision> {
    if (!this.hasAuthorize) return { ok: true }
    for (const p of this.providers) {
      if (!p.authorize) continue
      const r = await p.authorize(req)
      if (r === 'allow') return { ok: true }
      if (r === 'deny') return { ok: false, by: p }
    }
    return { ok: false }
  }

  /** As `authorize` without waiting, or undefined when a provider can only answer asynchronously. */
  authorizeNow (req: AuthorizeRequest): boolean | undefined {
    if (!this.hasAuthorize) return true
    if (!this.authorizesNow) return undefined
    for (const p of this.providers) {
      if (!p.authorize) continue
      const r = p.authorizeSync!(req)
      if (r === 'allow') return true
      if (r === 'deny') return false
    }
    return false
  }

  receive (req: ReceiveRequest): boolean {
    for (const p of this.receivers) {
      const r: AuthResult = p.authorizeReceive!(req)
      if (r === 'allow') return true
      if (r === 'deny') return false
    }
    return false
  }
}

export class AuthChain {
  private constructor (
    private readonly global: ProviderSet,
    private readonly perListener: Map<string, ProviderSet> | undefined,
    private readonly log: Logger
  ) {}

  static async create (cfg: Config, log: Logger): Promise<AuthChain> {
    const build = async (auth: AuthConfig): Promise<ProviderSet> => {
      const providers: AuthProvider[] = []
      for (const factory of authProviderFactories) {
        const p = await factory(auth, log)
        if (p) providers.push(p)
      }
      return new ProviderSet(auth, providers)
    }
    const global = await build(cfg.auth)
    let perListener: Map<string, ProviderSet> | undefined
    if (cfg.perListenerSettings) {
      perListener = new Map()
      for (const l of cfg.listeners) perListener.set(l.id, await build(l.auth))
    }
    return new AuthChain(global, perListener, log)
  }

  private set (listener: ListenerConfig): ProviderSet {
    return this.perListener?.get(listener.id) ?? this.global
  }

  /** True when any provider checks delivered messages (so the broker installs authorizeForward at all). */
  get checksReceive (): boolean {
    if (this.global.receivers.length > 0) return true
    for (const s of this.perListener?.values() ?? []) if (s.receivers.length > 0) return true
    return false
  }

  authenticate (req: AuthenticateRequest): Promise<ConnectDecision> {
    return this.set(req.conn.listener).authenticate(req)
  }

  authorize (req: AuthorizeRequest): Promise<boolean> {
    return this.set(req.conn.listener).authorize(req)
  }

  /** The verdict of `authorize` at once, or undefined when it needs waiting for (a plugin's provider). */
  authorizeNow (req: AuthorizeRequest): boolean | undefined {
    return this.set(req.conn.listener).authorizeNow(req)
  }

  /** Whether a provider of this listener's chain does MQTT 5 enhanced authentication. */
  hasEnhancedAuth (listener: ListenerConfig): boolean {
    return this.set(listener).enhanced.length > 0
  }

  /** The first answer of an enhanced-authentication exchange: the first provider that does not defer decides. */
  enhancedAuth (req: EnhancedAuthRequest): Promise<EnhancedAuthAnswer> {
    return this.set(req.conn.listener).enhancedAuth(req)
  }

  /** As `authorize`, naming the provider that denied. */
  decide (req: AuthorizeRequest): Promise<AuthorizeDecision> {
    return this.set(req.conn.listener).decide(req)
  }

  /** Synchronous read check for every delivered message. */
  authorizeReceive (listener: ListenerConfig, req: ReceiveRequest): boolean {
    const s = this.set(listener)
    return s.receivers.length === 0 ? true : s.receive(req)
  }

  private all (): AuthProvider[] {
    const out = [...this.global.providers]
    for (const s of this.perListener?.values() ?? []) out.push(...s.providers)
    return out
  }

  /** SIGHUP: reload every provider; one that fails keeps its old rules and the reason is logged. */
  async reload (): Promise<void> {
    for (const p of this.all()) {
      if (!p.reload) continue
      try {
        await p.reload()
        this.log.info({ provider: p.name }, 'auth provider reloaded')
      } catch (err) {
        this.log.error({ provider: p.name, err: (err as Error).message }, 'reload failed; keeping the previous rules')
      }
    }
  }

  async close (): Promise<void> {
    for (const p of this.all()) await p.close?.()
  }
}
