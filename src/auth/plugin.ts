/**
 * `auth_plugin PATH`: an ES module whose default export (or `createAuthProvider` export) is a factory
 * `(options, log) => AuthProvider | Promise<AuthProvider>` (see src/auth/types.ts and config/auth-plugin-example.js).
 * `auth_opt_NAME VALUE` lines after `auth_plugin` become `options.NAME`. Several plugins are asked in the order
 * they are configured; a plugin that lacks a method is not asked about that event.
 */
import { pathToFileURL } from 'node:url'
import { BrokerError } from '../errors.js'
import type { AuthPluginConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import type { AuthProvider, AuthProviderFactory, AuthResult, AuthenticateRequest, AuthorizeRequest, ReceiveRequest, EnhancedAuthAnswer, EnhancedAuthRequest } from './types.js'

export type AuthPluginFactory = (options: Readonly<Record<string, string>>, log: Logger) => AuthProvider | Promise<AuthProvider>

const RESULTS = new Set<unknown>(['allow', 'deny', 'defer'])

function pluginError (path: string, reason: string, cause?: unknown): BrokerError {
  return new BrokerError('PLUGIN', `Error: unable to load auth_plugin "${path}": ${reason.replace(/\.$/, '')}.`, { cause })
}

function checkResult (name: string, r: unknown): AuthResult {
  if (RESULTS.has(r)) return r as AuthResult
  throw new Error(`auth_plugin ${name} answered ${JSON.stringify(r)}; expected 'allow', 'deny' or 'defer'`)
}

/** An enhanced-authentication answer as the broker can act on it; anything else is the plug-in's error. */
function checkAnswer (name: string, a: unknown): EnhancedAuthAnswer {
  const r = a as Partial<Record<'result' | 'data' | 'next' | 'username', unknown>> | null | undefined
  const ok = r !== null && typeof r === 'object' && (
    r.result === 'deny' || r.result === 'defer' ||
    (r.result === 'allow' && (r.data === undefined || Buffer.isBuffer(r.data)) && (r.username === undefined || typeof r.username === 'string')) ||
    (r.result === 'continue' && (r.data === undefined || Buffer.isBuffer(r.data)) && typeof r.next === 'function'))
  if (!ok) throw new Error(`auth_plugin ${name} answered enhanced authentication with ${JSON.stringify(r?.result)}; expected { result: 'continue' | 'allow' | 'deny' | 'defer' } with Buffer data`)
  if (r.result !== 'continue') return r as EnhancedAuthAnswer
  const next = r.next as (data: Buffer | undefined) => Promise<EnhancedAuthAnswer>
  // every later answer of the exchange is checked too
  return { result: 'continue', ...(r.data !== undefined ? { data: r.data as Buffer } : {}), next: async data => checkAnswer(name, await next(data)) }
}

export async function loadAuthPlugin (cfg: AuthPluginConfig, log: Logger): Promise<AuthProvider> {
  let mod: Record<string, unknown>
  try {
    mod = await import(pathToFileURL(cfg.path).href) as Record<string, unknown>
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw pluginError(cfg.path, e.code === 'ERR_MODULE_NOT_FOUND' ? 'no such file' : e.message, err)
  }
  const factory = (typeof mod.default === 'function' ? mod.default : mod.createAuthProvider) as AuthPluginFactory | undefined
  if (typeof factory !== 'function') throw pluginError(cfg.path, 'it exports neither a default function nor createAuthProvider')
  let p: AuthProvider
  try {
    p = await factory(Object.freeze({ ...cfg.options }), log.child({ plugin: cfg.path }))
  } catch (err) {
    throw pluginError(cfg.path, `its factory failed: ${(err as Error).message}`, err)
  }
  if (!p || typeof p !== 'object') throw pluginError(cfg.path, 'its factory did not return an object')
  for (const m of ['authenticate', 'enhancedAuth', 'authorize', 'authorizeReceive', 'reload', 'close'] as const) {
    if (p[m] !== undefined && typeof p[m] !== 'function') throw pluginError(cfg.path, `${m} is not a function`)
  }
  if (!p.authenticate && !p.enhancedAuth && !p.authorize && !p.authorizeReceive) throw pluginError(cfg.path, 'it implements none of authenticate, enhancedAuth, authorize, authorizeReceive')
  return cfg.denySpecialChars === false ? p : denySpecialChars(p)
}

const SPECIAL = /[+#]/

/**
 * `auth_plugin_deny_special_chars` (mosquitto's default, true): an ACL check for a client whose username or client
 * id holds `+` or `#` is denied before the plug-in sees it, so a plug-in that builds topic patterns from them cannot
 * be tricked into granting wildcards.
 */
function denySpecialChars (p: AuthProvider): AuthProvider {
  const special = (r: { clientId: string, username?: string }): boolean => SPECIAL.test(r.clientId) || (r.username !== undefined && SPECIAL.test(r.username))
  const out: AuthProvider = { name: p.name }
  if (p.authenticate) out.authenticate = p.authenticate.bind(p)
  if (p.enhancedAuth) out.enhancedAuth = p.enhancedAuth.bind(p)
  if (p.reload) out.reload = p.reload.bind(p)
  if (p.close) out.close = p.close.bind(p)
  if (p.authorize) {
    const authorize = p.authorize.bind(p)
    out.authorize = async (req: AuthorizeRequest) => special(req) ? 'deny' : await authorize(req)
  }
  if (p.authorizeReceive) {
    const receive = p.authorizeReceive.bind(p)
    out.authorizeReceive = (req: ReceiveRequest) => special(req) ? 'deny' : receive(req)
  }
  return out
}

/** Several plugins as one provider: asked in order, allow/deny end it, defer asks the next. */
function combine (list: AuthProvider[]): AuthProvider {
  const name = list.map(p => p.name ?? 'auth_plugin').join(', ')
  const out: AuthProvider = {
    name,
    reload: async () => { for (const p of list) await p.reload?.() },
    close: async () => { for (const p of list) await p.close?.() }
  }
  const authn = list.filter(p => p.authenticate)
  const enhanced = list.filter(p => p.enhancedAuth)
  const authz = list.filter(p => p.authorize)
  const recv = list.filter(p => p.authorizeReceive)
  if (authn.length > 0) {
    out.authenticate = async (req: AuthenticateRequest) => {
      for (const p of authn) {
        const r = checkResult(p.name, await p.authenticate!(req))
        if (r !== 'defer') return r
      }
      return 'defer'
    }
  }
  if (enhanced.length > 0) {
    out.enhancedAuth = async (req: EnhancedAuthRequest) => {
      for (const p of enhanced) {
        const a = checkAnswer(p.name, await p.enhancedAuth!(req))
        if (a.result !== 'defer') return a
      }
      return { result: 'defer' }
    }
  }
  if (authz.length > 0) {
    out.authorize = async (req: AuthorizeRequest) => {
      for (const p of authz) {
        const r = checkResult(p.name, await p.authorize!(req))
        if (r !== 'defer') return r
      }
      return 'defer'
    }
  }
  if (recv.length > 0) {
    out.authorizeReceive = (req: ReceiveRequest) => {
      for (const p of recv) {
        const r = p.authorizeReceive!(req)
        // a plugin that returns a promise here (it must be synchronous) is treated as deny, never as allow
        if (r === 'allow' || r === 'deny') return r
        if (r !== 'defer') return 'deny'
      }
      return 'defer'
    }
  }
  return out
}

export const authPluginFactory: AuthProviderFactory = async (auth, log) => {
  if (auth.plugins.length === 0) return undefined
  const list: AuthProvider[] = []
  for (const cfg of auth.plugins) list.push(await loadAuthPlugin(cfg, log))
  return combine(list)
}

/** JSON.stringify replacer for `midge check`: auth_opt values whose name suggests a secret are not printed. */
export function redactAuthOptions (key: string, value: unknown): unknown {
  if (typeof value === 'string' && /pass|secret|token|key|credential/i.test(key) && !/_file$|file$|path$/i.test(key)) return '[redacted]'
  return value
}
