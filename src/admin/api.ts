/**
 * The admin API under `/api/v1` (documented in docs/openapi.yaml). Every route names the scope it needs:
 * `read` (any credential), `write` (write tokens and the admin credential) or `admin` (the admin credential
 * only: API tokens). Bodies are JSON objects; every field is validated and unknown fields are refused.
 */
import { connectedClients, subscriptionsOf } from '../aedes/internals.js'
import { displayFilter } from '../mqtt/shared-names.js'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Aedes, Client } from 'aedes'
import type { Config, ListenerConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import type { ConnectionContext } from '../mqtt/connection.js'
import { storeOf, type BrokerStats } from '../sys/stats.js'
import { validFilter } from '../auth/topic-match.js'
import { VERSION } from '../version.js'
import { AdminError, validationError } from './errors.js'
import { Fields, queryOf, readJson, sendError, sendJson } from './http.js'
import { AdminAuth, TOKEN_NAME, checkAdminPasswordFile, hashToken, newToken, parseTokenFile, sessionCookie, type Principal, type Scope } from './auth.js'
import { ACCESS_WORDS, AuthFiles, writeFileAtomic, type Access } from './files.js'
import { readFile } from 'node:fs/promises'

/** What the API needs from the Broker (structural, so tests and embedders can see the contract). */
/** What the admin API reads of a connection's CONNECT (the broker's hooks keep it). */
export interface AdminClientInfo {
  ctx: ConnectionContext
  username?: string
  keepalive: number
  protocolVersion: number
  connectedAt: number
}

export interface AdminBroker {
  readonly aedes: Aedes
  readonly hooks: { clientInfo: WeakMap<Client, AdminClientInfo> }
  readonly stats: BrokerStats
  readonly connections: Map<string, number>
  /** Bound addresses (a listener on port 0 gets its real port here). */
  readonly bound: ReadonlyArray<{ config: ListenerConfig, address: { port: number } }>
  readonly config: Config
  readonly log: Logger
  /** The auth chain: reloaded after each change of the password or ACL file (not Broker.reload: no TLS reload). */
  readonly auth: { reload (): Promise<void> }
  /** Queue accounting (durability), when present. */
  readonly durability?: { accounting?: { queued (clientId: string): { count: number, bytes: number } } }
  /** Bridges to other brokers (src/bridge/): state, queue depth, counters, last error; never credentials. */
  readonly bridges?: { view (): unknown[] }
}

type Handler = (ctx: RequestContext) => Promise<void>

interface RequestContext {
  req: IncomingMessage
  res: ServerResponse
  listener: ListenerConfig
  principal: Principal
  params: string[]
}

interface Route { method: string, pattern: RegExp, scope: Scope, handler: Handler }

const USERNAME_MAX = 1024
const PASSWORD_MAX = 1024
const TOPIC_MAX = 65535
const RETAINED_DEFAULT_LIMIT = 100
const RETAINED_MAX_LIMIT = 1000
/** How long a kick waits for aedes to finish closing the client (will published, client unregistered). */
const KICK_WAIT_MS = 5_000

/** C0 controls and DEL: a password-file line or a log line cannot carry them safely. */
function hasControlChar (v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i)
    if (c <= 0x1f || c === 0x7f) return true
  }
  return false
}

function checkUsername (v: string): string | undefined {
  if (hasControlChar(v)) return 'must not contain control characters'
  if (v.includes(':')) return 'must not contain ":" (the password file separates user and hash with it)'
  if (/[+#]/.test(v)) return 'must not contain "+" or "#" (ACL patterns deny such users)'
  if (v.trim() !== v) return 'must not start or end with white space'
  return undefined
}

function checkFilter (v: string): string | undefined {
  if (v.includes('\0') || v.includes('\n') || v.includes('\r')) return 'must not contain NUL or line breaks'
  if (v.trim() !== v) return 'must not start or end with white space'
  return validFilter(v) ? undefined : 'is not a valid MQTT topic filter'
}

function checkTopic (v: string): string | undefined {
  if (v.includes('\0')) return 'must not contain NUL'
  if (/[+#]/.test(v)) return 'must be a topic name, without wildcards'
  if (v.startsWith('$')) return 'must not be a $ topic (those belong to the broker)'
  return undefined
}

const SCOPE_RANK: Record<Scope, number> = { read: 0, write: 1, admin: 2 }

/** A payload as JSON: UTF-8 text when it is valid UTF-8, base64 otherwise. */
function payloadView (p: Buffer): { payload: string, encoding: 'utf8' | 'base64' } {
  const text = p.toString('utf8')
  return Buffer.from(text, 'utf8').equals(p) ? { payload: text, encoding: 'utf8' } : { payload: p.toString('base64'), encoding: 'base64' }
}

export class AdminApi {
  readonly auth: AdminAuth
  readonly files: AuthFiles
  private readonly routes: Route[] = []

  constructor (private readonly broker: AdminBroker) {
    const cfg = broker.config
    if (cfg.admin.passwordFile) checkAdminPasswordFile(cfg.admin.passwordFile)
    this.auth = new AdminAuth({ passwordFile: cfg.admin.passwordFile, tokenFile: cfg.admin.tokenFile })
    // the files the broker itself uses: the global ones, else the one all listeners share (per_listener_settings)
    const pick = (f: (l: ListenerConfig) => string | undefined, global: string | undefined): string | undefined => {
      if (global) return global
      const all = new Set(cfg.listeners.map(f).filter((x): x is string => x !== undefined))
      return all.size === 1 ? [...all][0] : undefined
    }
    this.files = new AuthFiles({
      passwordFile: pick(l => l.auth.passwordFile, cfg.auth.passwordFile),
      aclFile: pick(l => l.auth.aclFile, cfg.auth.aclFile),
      reload: () => broker.auth.reload()
    })
    this.defineRoutes()
  }

  private route (method: string, path: string, scope: Scope, handler: Handler): void {
    const pattern = new RegExp(`^/api/v1${path.replace(/\{[a-z]+\}/g, '([^/]+)')}$`)
    this.routes.push({ method, pattern, scope, handler })
  }

  /** Entry point for every request under /api/v1. */
  handle = async (req: IncomingMessage, res: ServerResponse, listener: ListenerConfig): Promise<void> => {
    try {
      await this.dispatch(req, res, listener)
    } catch (err) {
      if (err instanceof AdminError) { sendError(res, err); return }
      this.broker.log.error({ err: (err as Error).message }, 'admin API error')
      sendError(res, new AdminError('INTERNAL', 'internal error'))
    }
  }

  private async dispatch (req: IncomingMessage, res: ServerResponse, listener: ListenerConfig): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET')
    const secure = listener.transport === 'wss'
    const address = req.socket.remoteAddress ?? '?'
    const host = req.headers.host
    if (path === '/api/v1/session') {
      if (method === 'POST') { await this.login(req, res, address, secure); return }
      if (method === 'GET') {
        const s = await this.auth.sessionOf(req)
        if (!s) throw new AdminError('UNAUTHENTICATED', 'not logged in')
        sendJson(res, 200, { user: s.user, csrfToken: s.csrf, scope: 'admin' })
        return
      }
      if (method === 'DELETE') {
        await this.auth.authenticate(req, address, host)
        this.auth.endSession(req)
        sendJson(res, 204, null, { 'set-cookie': sessionCookie('', secure) })
        return
      }
      throw new AdminError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`)
    }
    const matches = this.routes.map(r => ({ r, m: r.pattern.exec(path) })).filter(x => x.m !== null)
    if (matches.length === 0) throw new AdminError('NOT_FOUND', `no such endpoint: ${path}`)
    const hit = matches.find(x => x.r.method === method)
    if (!hit) {
      const allow = [...new Set(matches.map(x => x.r.method))].join(', ')
      throw new AdminError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`, undefined, { allow })
    }
    const principal = await this.auth.authenticate(req, address, host)
    if (SCOPE_RANK[principal.scope] < SCOPE_RANK[hit.r.scope]) {
      throw new AdminError('FORBIDDEN', `this credential has scope ${principal.scope}; ${method} ${path} needs ${hit.r.scope}`)
    }
    let params: string[]
    try { params = hit.m!.slice(1).map(p => decodeURIComponent(p)) } catch {
      throw validationError([{ field: 'path', message: 'bad percent-encoding' }])
    }
    await hit.r.handler({ req, res, listener, principal, params })
  }

  private async login (req: IncomingMessage, res: ServerResponse, address: string, secure: boolean): Promise<void> {
    this.auth.limiter.check(address)
    const body = await readJson(req)
    const f = new Fields(body, ['username', 'password'])
    const username = f.string('username', { required: true, min: 1, max: USERNAME_MAX })
    const password = f.string('password', { required: true, min: 1, max: PASSWORD_MAX })
    f.done()
    if (!this.broker.config.admin.passwordFile) throw new AdminError('UNAUTHENTICATED', 'console login needs admin_password_file in the config')
    const hash = await this.auth.verifyAdmin(username!, password!)
    if (hash === undefined) {
      this.auth.limiter.fail(address)
      this.broker.log.warn({ remoteAddress: address }, 'admin login failed')
      throw new AdminError('UNAUTHENTICATED', 'wrong user name or password')
    }
    this.auth.limiter.succeed(address)
    const { id, session } = this.auth.createSession(username!, hash)
    this.broker.log.info({ remoteAddress: address, admin: username }, 'admin logged in')
    sendJson(res, 200, { user: session.user, csrfToken: session.csrf, scope: 'admin' }, { 'set-cookie': sessionCookie(id, secure) })
  }

  private audit (p: Principal, action: string, fields: Record<string, unknown> = {}): void {
    this.broker.log.info({ admin: p.name, via: p.kind, ...fields }, `admin: ${action}`)
  }

  private clientsByUser (username: string): Client[] {
    const out: Client[] = []
    const clients = connectedClients(this.broker.aedes)
    for (const id in clients) {
      const c = clients[id]!
      if (this.broker.hooks.clientInfo.get(c)?.username === username) out.push(c)
    }
    return out
  }

  private async kick (c: Client): Promise<void> {
    await new Promise<void>(resolve => {
      const t = setTimeout(resolve, KICK_WAIT_MS)
      c.close(() => { clearTimeout(t); resolve() })
    })
  }

  private clientView (c: Client): Record<string, unknown> {
    const info = this.broker.hooks.clientInfo.get(c)
    const subs = subscriptionsOf(c)
    const queued = this.broker.durability?.accounting?.queued(c.id)
    return {
      clientId: c.id,
      username: info?.username ?? null,
      address: info?.ctx.remoteAddress ?? null,
      port: info?.ctx.remotePort ?? null,
      listener: info?.ctx.listener.id ?? null,
      connectedSince: info?.connectedAt !== undefined ? new Date(info.connectedAt).toISOString() : null,
      cleanSession: c.clean,
      keepalive: info?.keepalive ?? null,
      protocolVersion: info?.protocolVersion ?? null,
      // v5: seconds the session outlives the connection (0xFFFFFFFF never expires); 3.1.1: null
      sessionExpiryInterval: c.version === 5 ? c.sessionExpiryInterval : null,
      subscriptions: Object.keys(subs).map(name => ({ topic: displayFilter(name), qos: subs[name]!.qos })).sort((a, b) => a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0),
      queuedMessages: queued?.count ?? 0
    }
  }

  private defineRoutes (): void {
    const b = this.broker
    const clients = (): Record<string, Client> => connectedClients(b.aedes)

    this.route('GET', '', 'read', async ({ res, principal }) => {
      sendJson(res, 200, { version: VERSION, api: 'v1', scope: principal.scope })
    })

    // ---- stats (the $SYS figures, from src/sys/stats.ts)
    this.route('GET', '/stats', 'read', async ({ res }) => {
      const snap = await b.stats.snapshot(b.aedes)
      const listeners = b.config.listeners.map(l => ({ id: l.id, transport: l.transport, port: b.bound.find(x => x.config.id === l.id)?.address.port ?? l.port, connections: b.connections.get(l.id) ?? 0 }))
      sendJson(res, 200, { version: VERSION, time: new Date().toISOString(), ...snap, listeners })
    })

    // ---- bridges (connection blocks)
    this.route('GET', '/bridges', 'read', async ({ res }) => {
      sendJson(res, 200, { bridges: b.bridges?.view() ?? [] })
    })

    // ---- clients
    this.route('GET', '/clients', 'read', async ({ res }) => {
      const all = clients()
      const list = Object.keys(all).sort().map(id => this.clientView(all[id]!))
      sendJson(res, 200, { clients: list })
    })
    this.route('GET', '/clients/{id}', 'read', async ({ res, params }) => {
      const c = clients()[params[0]!]
      if (!c) throw new AdminError('CLIENT_NOT_FOUND', `no connected client ${params[0]!}`)
      sendJson(res, 200, this.clientView(c))
    })
    this.route('DELETE', '/clients/{id}', 'write', async ({ res, params, principal }) => {
      const c = clients()[params[0]!]
      if (!c) throw new AdminError('CLIENT_NOT_FOUND', `no connected client ${params[0]!}`)
      await this.kick(c)
      this.audit(principal, 'client disconnected', { clientId: c.id })
      sendJson(res, 204, null)
    })

    // ---- users (password_file)
    this.route('GET', '/users', 'read', async ({ res }) => {
      sendJson(res, 200, { users: await this.files.listUsers() })
    })
    this.route('POST', '/users', 'write', async ({ req, res, principal }) => {
      const f = new Fields(await readJson(req), ['username', 'password'])
      const username = f.string('username', { required: true, min: 1, max: USERNAME_MAX, check: checkUsername })
      const password = f.string('password', { required: true, min: 1, max: PASSWORD_MAX })
      f.done()
      await this.files.createUser(username!, password!)
      this.audit(principal, 'user created', { username })
      sendJson(res, 201, { username, disabled: false }, { location: `/api/v1/users/${encodeURIComponent(username!)}` })
    })
    this.route('PATCH', '/users/{name}', 'write', async ({ req, res, params, principal }) => {
      const username = params[0]!
      const f = new Fields(await readJson(req), ['password', 'disabled'])
      const password = f.string('password', { min: 1, max: PASSWORD_MAX })
      const disabled = f.boolean('disabled')
      if (password === undefined && disabled === undefined && f.problems.length === 0) f.add('body', 'give password and/or disabled')
      f.done()
      await this.files.updateUser(username, { password, disabled })
      // a disabled user's live connections end now (they could not log in again anyway)
      if (disabled === true) for (const c of this.clientsByUser(username)) await this.kick(c)
      this.audit(principal, 'user changed', { username, passwordChanged: password !== undefined, disabled })
      const entry = (await this.files.listUsers()).find(u => u.username === username)
      sendJson(res, 200, entry ?? { username, disabled: disabled ?? false })
    })
    this.route('DELETE', '/users/{name}', 'write', async ({ res, params, principal }) => {
      const username = params[0]!
      await this.files.deleteUser(username)
      for (const c of this.clientsByUser(username)) await this.kick(c)
      this.audit(principal, 'user deleted', { username })
      sendJson(res, 204, null)
    })

    // ---- ACL rules (acl_file)
    this.route('GET', '/acl/rules', 'read', async ({ req, res }) => {
      const q = queryOf(req)
      let rules = await this.files.listRules()
      if (q.has('user')) rules = rules.filter(r => r.kind === 'topic' && r.user === q.get('user'))
      if (q.get('anonymous') === 'true') rules = rules.filter(r => r.kind === 'topic' && r.user === null)
      if (q.get('kind') === 'pattern') rules = rules.filter(r => r.kind === 'pattern')
      sendJson(res, 200, { rules })
    })
    this.route('POST', '/acl/rules', 'write', async ({ req, res, principal }) => {
      const body = await readJson(req)
      const f = new Fields(body, ['kind', 'user', 'access', 'topic'])
      const kind = f.oneOf('kind', ['topic', 'pattern'] as const, true)
      const access = f.oneOf<Access>('access', ACCESS_WORDS, true)
      const topic = f.string('topic', { required: true, min: 1, max: TOPIC_MAX, check: checkFilter })
      let user: string | null = null
      if (body.user !== undefined && body.user !== null) {
        if (kind === 'pattern') f.add('user', 'pattern rules apply to every client; leave user out (use %u in the topic)')
        else user = f.string('user', { min: 1, max: USERNAME_MAX, check: checkUsername }) ?? null
      }
      if (kind === 'topic' && topic !== undefined && /%[cu]/.test(topic)) f.add('topic', '%c and %u are only substituted in pattern rules')
      f.done()
      const rule = await this.files.addRule({ kind: kind!, user, access: access!, topic: topic! })
      this.audit(principal, 'ACL rule added', { rule: `${rule.kind} ${rule.access} ${rule.topic}`, username: rule.user })
      sendJson(res, 201, rule)
    })
    this.route('DELETE', '/acl/rules/{id}', 'write', async ({ res, params, principal }) => {
      if (!/^[0-9a-f]{16}$/.test(params[0]!)) throw validationError([{ field: 'id', message: 'must be 16 hex digits' }])
      await this.files.removeRule(params[0]!)
      this.audit(principal, 'ACL rule removed', { rule: params[0] })
      sendJson(res, 204, null)
    })

    // ---- retained messages
    this.route('GET', '/retained', 'read', async ({ req, res }) => {
      const q = queryOf(req)
      const filter = q.get('filter') ?? '#'
      const limitText = q.get('limit') ?? String(RETAINED_DEFAULT_LIMIT)
      const problems = []
      const why = checkFilter(filter)
      if (why) problems.push({ field: 'filter', message: why })
      const limit = Number(limitText)
      if (!/^\d+$/.test(limitText) || limit < 1 || limit > RETAINED_MAX_LIMIT) problems.push({ field: 'limit', message: `must be an integer from 1 to ${RETAINED_MAX_LIMIT}` })
      if (problems.length > 0) throw validationError(problems)
      const out: Array<Record<string, unknown>> = []
      let truncated = false
      for await (const p of storeOf(b.aedes).createRetainedStream(filter)) {
        if (p.payload.length === 0) continue
        if (out.length >= limit) { truncated = true; break }
        out.push({ topic: p.topic, qos: p.qos, bytes: p.payload.length, ...payloadView(p.payload), ...(p.properties ? { properties: propertiesView(p.properties) } : {}) })
      }
      out.sort((x, y) => (x.topic as string) < (y.topic as string) ? -1 : 1)
      sendJson(res, 200, { filter, messages: out, truncated })
    })
    this.route('DELETE', '/retained', 'write', async ({ req, res, principal }) => {
      const topic = queryOf(req).get('topic')
      if (topic === null || topic === '') throw validationError([{ field: 'topic', message: 'is required' }])
      const why = checkTopic(topic)
      if (why) throw validationError([{ field: 'topic', message: why }])
      // an empty retained publish deletes it, as from any client [MQTT-3.3.1-10]
      await new Promise<void>((resolve, reject) => b.aedes.publish({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false }, err => err ? reject(err) : resolve()))
      this.audit(principal, 'retained message deleted', { topic })
      sendJson(res, 204, null)
    })

    // ---- API tokens (admin_token_file): the admin credential only
    this.route('GET', '/tokens', 'admin', async ({ res }) => {
      this.tokenFile()
      sendJson(res, 200, { tokens: (await this.auth.tokens()).map(t => ({ name: t.name, scope: t.scope })) })
    })
    this.route('POST', '/tokens', 'admin', async ({ req, res, principal }) => {
      const file = this.tokenFile()
      const f = new Fields(await readJson(req), ['name', 'scope'])
      const name = f.string('name', { required: true, min: 1, max: 64, check: v => TOKEN_NAME.test(v) ? undefined : 'letters, digits, "_", "." and "-" only' })
      const scope = f.oneOf('scope', ['read', 'write'] as const, true)
      f.done()
      const token = newToken()
      await this.tokenEdit(file, lines => {
        if (parseTokenFile(lines.join('\n')).some(t => t.name === name)) throw new AdminError('TOKEN_EXISTS', `a token named ${name!} exists`)
        return [...lines, `${name!}:${scope!}:${hashToken(token)}`]
      })
      this.audit(principal, 'token created', { token: name, scope })
      // the only time the token is shown: the file keeps its hash
      sendJson(res, 201, { name, scope, token })
    })
    this.route('DELETE', '/tokens/{name}', 'admin', async ({ res, params, principal }) => {
      const file = this.tokenFile()
      const name = params[0]!
      await this.tokenEdit(file, lines => {
        const out = lines.filter(l => !l.trim().startsWith(`${name}:`))
        if (out.length === lines.length) throw new AdminError('TOKEN_NOT_FOUND', `no token named ${name}`)
        return out
      })
      this.audit(principal, 'token deleted', { token: name })
      sendJson(res, 204, null)
    })
  }

  private tokenFile (): string {
    const f = this.broker.config.admin.tokenFile
    if (!f) throw new AdminError('NO_TOKEN_FILE', 'no admin_token_file is configured')
    return f
  }

  private tokenQueue: Promise<unknown> = Promise.resolve()

  private tokenEdit (file: string, edit: (lines: string[]) => string[]): Promise<void> {
    const run = this.tokenQueue.then(async () => {
      let text = ''
      try { text = await readFile(file, 'utf8') } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new AdminError('FILE_WRITE', `could not read ${file}`)
      }
      const lines = text.split('\n').filter((l, i, a) => !(l === '' && i === a.length - 1))
      const out = edit(lines)
      await writeFileAtomic(file, out.length === 0 ? '' : `${out.join('\n')}\n`)
    })
    // the caller gets the failure from `run`; the queue only orders the next edit after this one
    this.tokenQueue = run.catch(() => {})
    return run
  }
}

/** MQTT 5 properties as JSON: binary Correlation Data as base64, absent and internal fields left out. */
function propertiesView (props: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || k === 'topicAlias' || k === 'subscriptionIdentifier') continue
    out[k] = Buffer.isBuffer(v) ? v.toString('base64') : v
  }
  return out
}
