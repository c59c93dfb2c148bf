/**
 * Who may use the admin API, and how:
 * - the admin credential (`admin_password_file`, mosquitto_passwd format, never the MQTT `password_file`): the
 *   console logs in with it (POST /api/v1/session sets an HttpOnly, SameSite=Strict session cookie, Secure on TLS
 *   listeners) and scripts may send it as HTTP Basic auth. Scope `admin`: everything, including tokens.
 * - API tokens (`admin_token_file`, `NAME:read|write:SHA256HEX` per line; only the hash is stored): sent as
 *   `Authorization: Bearer TOKEN`. `read` tokens may only GET; `write` tokens may change users, rules, clients and
 *   retained messages but not tokens.
 * A cookie-authenticated request that changes anything must carry the session's CSRF token in `x-csrf-token`
 * (and, when the browser sends `Origin`, come from this origin). Secrets are compared in constant time; failed
 * logins are limited per remote address. Files are re-read on every use, so rotating a credential needs no restart.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { BrokerError, fileErrorReason } from '../errors.js'
import type { IncomingMessage } from 'node:http'
import { parsePasswordFile } from '../auth/password-file.js'
import { DUMMY_HASH, verifyPassword, type ParsedHash } from '../auth/password-hash.js'
import { AdminError } from './errors.js'

export type Scope = 'read' | 'write' | 'admin'

export interface Principal {
  kind: 'session' | 'basic' | 'token'
  name: string
  scope: Scope
  session?: Session
}

export interface Session {
  user: string
  /** The admin's stored hash at login: a changed or removed admin entry ends the session at its next request. */
  hash: Buffer
  csrf: string
  createdAt: number
  lastSeen: number
}

export const SESSION_COOKIE = 'midge_admin'
/** A session ends this long after login, or after this long without a request. */
export const SESSION_MAX_MS = 12 * 3600_000
export const SESSION_IDLE_MS = 30 * 60_000
const MAX_SESSIONS = 1000

/** Failed logins (console, Basic, Bearer) allowed per remote address per window before answers become 429. */
export const LOGIN_FAILURES_ALLOWED = 5
export const LOGIN_WINDOW_MS = 5 * 60_000
const MAX_TRACKED = 10_000

export const TOKEN_NAME = /^[A-Za-z0-9_.-]{1,64}$/

function sha256 (s: string | Buffer): Buffer {
  return createHash('sha256').update(s).digest()
}

/** Constant-time string equality (hashing first makes the lengths equal). */
export function safeEqual (a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b))
}

/** Failed attempts per address in a sliding window. */
export class FailureLimiter {
  private readonly hits = new Map<string, number[]>()

  constructor (private readonly allowed = LOGIN_FAILURES_ALLOWED, private readonly windowMs = LOGIN_WINDOW_MS, private readonly now: () => number = Date.now) {}

  /** Throws RATE_LIMITED when the address used up its failures. */
  check (address: string): void {
    const now = this.now()
    const recent = (this.hits.get(address) ?? []).filter(t => now - t < this.windowMs)
    if (recent.length >= this.allowed) {
      const retry = Math.max(1, Math.ceil((recent[0]! + this.windowMs - now) / 1000))
      throw new AdminError('RATE_LIMITED', `too many failed logins from ${address}; try again in ${retry} s`, undefined, { 'retry-after': String(retry) })
    }
  }

  fail (address: string): void {
    const now = this.now()
    const recent = (this.hits.get(address) ?? []).filter(t => now - t < this.windowMs)
    recent.push(now)
    this.hits.delete(address)
    this.hits.set(address, recent)
    if (this.hits.size > MAX_TRACKED) this.hits.delete(this.hits.keys().next().value!)
  }

  succeed (address: string): void { this.hits.delete(address) }
}

export interface TokenEntry { name: string, scope: 'read' | 'write', hash: Buffer }

export function parseTokenFile (text: string): TokenEntry[] {
  const out: TokenEntry[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const m = /^([A-Za-z0-9_.-]{1,64}):(read|write):([0-9a-f]{64})$/.exec(line)
    if (m) out.push({ name: m[1]!, scope: m[2] as 'read' | 'write', hash: Buffer.from(m[3]!, 'hex') })
  }
  return out
}

export function hashToken (token: string): string {
  return sha256(token).toString('hex')
}

/** A new API token: 32 random bytes, base64url, with a prefix that secret scanners can spot. */
export function newToken (): string {
  return `midge_${randomBytes(32).toString('base64url')}`
}

function hostOf (origin: string): string | undefined {
  try { return new URL(origin).host } catch { return undefined }
}

/**
 * Start-up check: the admin password file must be readable and hold at least one valid entry, or the
 * daemon stops with one readable line (exit 1), as for the MQTT password_file.
 */
export function checkAdminPasswordFile (file: string): void {
  let text: string
  try { text = readFileSync(file, 'utf8') } catch (err) {
    throw new BrokerError('AUTH_FILE', `Error: unable to open admin_password_file "${file}": ${fileErrorReason(err)}.`, { cause: err })
  }
  const t = parsePasswordFile(text, file)
  if (t.users.size === 0) throw new BrokerError('AUTH_FILE', `Error: admin_password_file "${file}" holds no valid user:hash line (make one with "mosquitto_passwd -c ${file} admin").${t.problems.length > 0 ? ` ${t.problems.join(' ')}` : ''}`)
}

function cookies (req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>()
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim())
  }
  return out
}

export interface AdminAuthOptions {
  passwordFile?: string
  tokenFile?: string
  now?: () => number
}

export class AdminAuth {
  /** Keyed by sha256(session id): the id itself is only ever in the browser's cookie. */
  private readonly sessions = new Map<string, Session>()
  readonly limiter: FailureLimiter
  private readonly now: () => number

  constructor (readonly opts: AdminAuthOptions) {
    this.now = opts.now ?? Date.now
    this.limiter = new FailureLimiter(LOGIN_FAILURES_ALLOWED, LOGIN_WINDOW_MS, this.now)
  }

  /** The admin entry as the file says now (re-read each time: rotating the credential needs no restart). */
  private async adminHash (username: string): Promise<ParsedHash | undefined> {
    if (!this.opts.passwordFile) return undefined
    let text: string
    try { text = await readFile(this.opts.passwordFile, 'utf8') } catch (err) {
      // not an AdminError: the API's handler logs the reason and answers MIDGE_ERR_ADMIN_INTERNAL without it
      throw new Error(`the admin_password_file ${this.opts.passwordFile} cannot be read: ${fileErrorReason(err)}`, { cause: err })
    }
    return parsePasswordFile(text, this.opts.passwordFile).users.get(username)
  }

  /** Checks the admin credential (constant time; unknown users cost as much as known ones); the stored hash if right. */
  async verifyAdmin (username: string, password: string): Promise<Buffer | undefined> {
    const h = await this.adminHash(username)
    const ok = await verifyPassword(h ?? DUMMY_HASH, Buffer.from(password, 'utf8'))
    return ok && h !== undefined ? h.hash : undefined
  }

  async tokens (): Promise<TokenEntry[]> {
    if (!this.opts.tokenFile) return []
    try { return parseTokenFile(await readFile(this.opts.tokenFile, 'utf8')) } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new AdminError('INTERNAL', 'the admin_token_file cannot be read')
    }
  }

  /** Every entry is compared, so the time taken does not depend on which one matched. */
  async verifyToken (token: string): Promise<TokenEntry | undefined> {
    const h = sha256(token)
    let found: TokenEntry | undefined
    for (const t of await this.tokens()) if (timingSafeEqual(t.hash, h) && !found) found = t
    return found
  }

  /** Starts a session after a successful login: returns the cookie value and the CSRF token. */
  createSession (user: string, hash: Buffer): { id: string, session: Session } {
    this.prune()
    const id = randomBytes(32).toString('base64url')
    const now = this.now()
    const session: Session = { user, hash, csrf: randomBytes(32).toString('base64url'), createdAt: now, lastSeen: now }
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!)
    this.sessions.set(sha256(id).toString('hex'), session)
    return { id, session }
  }

  endSession (req: IncomingMessage): void {
    const id = cookies(req).get(SESSION_COOKIE)
    if (id) this.sessions.delete(sha256(id).toString('hex'))
  }

  private prune (): void {
    const now = this.now()
    for (const [k, s] of this.sessions) if (now - s.createdAt > SESSION_MAX_MS || now - s.lastSeen > SESSION_IDLE_MS) this.sessions.delete(k)
  }

  async sessionOf (req: IncomingMessage): Promise<Session | undefined> {
    const id = cookies(req).get(SESSION_COOKIE)
    if (!id) return undefined
    const key = sha256(id).toString('hex')
    const s = this.sessions.get(key)
    if (!s) return undefined
    const now = this.now()
    if (now - s.createdAt > SESSION_MAX_MS || now - s.lastSeen > SESSION_IDLE_MS) { this.sessions.delete(key); return undefined }
    const h = await this.adminHash(s.user)
    if (!h || !h.hash.equals(s.hash)) { this.sessions.delete(key); return undefined }
    s.lastSeen = now
    return s
  }

  /**
   * Identifies the caller: Bearer token, Basic admin credential, or session cookie (+ CSRF for changes).
   * Throws UNAUTHENTICATED, CSRF or RATE_LIMITED.
   */
  async authenticate (req: IncomingMessage, address: string, expectedHost: string | undefined): Promise<Principal> {
    const header = req.headers.authorization
    if (header !== undefined) {
      this.limiter.check(address)
      const space = header.indexOf(' ')
      const scheme = space > 0 ? header.slice(0, space).toLowerCase() : header.toLowerCase()
      const value = space > 0 ? header.slice(space + 1).trim() : ''
      if (scheme === 'bearer' && value !== '') {
        const t = await this.verifyToken(value)
        if (t) { this.limiter.succeed(address); return { kind: 'token', name: t.name, scope: t.scope } }
      } else if (scheme === 'basic' && value !== '') {
        const decoded = Buffer.from(value, 'base64').toString('utf8')
        const colon = decoded.indexOf(':')
        if (colon > 0 && await this.verifyAdmin(decoded.slice(0, colon), decoded.slice(colon + 1)) !== undefined) {
          this.limiter.succeed(address)
          return { kind: 'basic', name: decoded.slice(0, colon), scope: 'admin' }
        }
      }
      this.limiter.fail(address)
      throw new AdminError('UNAUTHENTICATED', 'invalid credentials', undefined, { 'www-authenticate': 'Bearer realm="midge", Basic realm="midge"' })
    }
    const session = await this.sessionOf(req)
    if (!session) throw new AdminError('UNAUTHENTICATED', 'not logged in')
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      // the host part only: behind a TLS-terminating proxy the browser's scheme is not the listener's
      const origin = req.headers.origin
      if (origin !== undefined && hostOf(origin) !== expectedHost) throw new AdminError('CSRF', 'cross-origin request refused')
      const token = req.headers['x-csrf-token']
      if (typeof token !== 'string' || !safeEqual(token, session.csrf)) throw new AdminError('CSRF', 'missing or wrong x-csrf-token header')
    }
    return { kind: 'session', name: session.user, scope: 'admin', session }
  }
}

/** Set-Cookie value for a new session (or for clearing it with `id = ''`). */
export function sessionCookie (id: string, secure: boolean): string {
  const parts = [`${SESSION_COOKIE}=${id}`, 'Path=/', 'HttpOnly', 'SameSite=Strict']
  if (secure) parts.push('Secure')
  if (id === '') parts.push('Max-Age=0')
  return parts.join('; ')
}
