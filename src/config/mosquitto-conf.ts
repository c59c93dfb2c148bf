/**
 * mosquitto.conf reader: a lexer that turns files into entries carrying file:line, and one option table that
 * maps mosquitto's snake_case keys onto the typed Config. Errors use mosquitto's wording and always name
 * file:line and the option; every problem in the file is collected, not just the first.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { resolve, join, dirname } from 'node:path'
import { hostname } from 'node:os'
import {
  type Config, type ClusterConfig, type ListenerConfig, type AuthConfig, type LogType, type LogDest, type CsrSigningConfig,
  defaultConfig, defaultListener, defaultAuth, defaultCsrSigning, LOG_TYPES, MQTT_DEFAULT_PORT
} from './schema.js'
import { applyBridgeOption, BRIDGE_KEYS, finishBridges } from '../bridge/config.js'

export interface ConfEntry {
  key: string
  args: string[]
  file: string
  line: number
}

export class ConfProblems {
  readonly errors: string[] = []
  readonly warnings: string[] = []

  error (where: { file: string, line: number } | undefined, msg: string): void {
    this.errors.push(where ? `Error: ${msg} Error found at ${where.file}:${where.line}.` : `Error: ${msg}`)
  }

  warn (where: { file: string, line: number } | undefined, msg: string): void {
    this.warnings.push(where ? `Warning: ${msg} (${where.file}:${where.line})` : `Warning: ${msg}`)
  }
}

// ---------------------------------------------------------------------------------------------- lexer

export function lexConf (text: string, file: string): ConfEntry[] {
  const entries: ConfEntry[] = []
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const trimmed = (lines[i] ?? '').trim()
    if (trimmed === '' || trimmed.startsWith('#')) continue
    const [key, ...tokens] = trimmed.split(/\s+/)
    // after the first value, a token starting with '#' begins a trailing comment (mosquitto ignores what follows a
    // value); the first value is taken as it is, so a password or path may start with '#'
    const hash = tokens.findIndex((t, i) => i > 0 && t.startsWith('#'))
    const args = hash < 0 ? tokens : tokens.slice(0, hash)
    entries.push({ key: key!, args, file, line: i + 1 })
  }
  return entries
}

/** Reads a config file, expanding `include_dir` in place (every `*.conf` in alphabetical order). */
export function readConfFile (path: string, problems: ConfProblems, from?: ConfEntry, depth = 0): ConfEntry[] {
  const file = resolve(path)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (err as Error).message
    problems.error(from, `Unable to open config file ${file}: ${reason}.`)
    return []
  }
  const out: ConfEntry[] = []
  for (const entry of lexConf(text, file)) {
    if (entry.key !== 'include_dir') { out.push(entry); continue }
    const dir = entry.args[0]
    if (!dir) { problems.error(entry, 'Empty include_dir value in configuration.'); continue }
    if (depth > 8) { problems.error(entry, 'include_dir nested too deeply.'); continue }
    const abs = resolve(dirname(file), dir)
    let names: string[]
    try {
      if (!statSync(abs).isDirectory()) throw new Error('not a directory')
      names = readdirSync(abs).filter(n => n.endsWith('.conf')).sort()
    } catch {
      problems.error(entry, `Unable to open include_dir '${dir}'.`)
      continue
    }
    for (const name of names) out.push(...readConfFile(join(abs, name), problems, entry, depth + 1))
  }
  return out
}

// ------------------------------------------------------------------------------------- value parsers

type Where = { file: string, line: number }

function one (e: ConfEntry, p: ConfProblems): string | undefined {
  const v = e.args[0]
  if (v === undefined || v === '') { p.error(e, `Empty ${e.key} value in configuration.`); return undefined }
  if (e.args.length > 1) p.warn(e, `Extra arguments after ${e.key} value ignored: ${e.args.slice(1).join(' ')}`)
  return v
}

function bool (e: ConfEntry, p: ConfProblems): boolean | undefined {
  const v = one(e, p)
  if (v === undefined) return undefined
  if (v === 'true') return true
  if (v === 'false') return false
  p.error(e, `Invalid ${e.key} value (${v}).`)
  return undefined
}

function int (e: ConfEntry, p: ConfProblems, min: number, max: number): number | undefined {
  const v = one(e, p)
  if (v === undefined) return undefined
  if (!/^-?\d+$/.test(v)) { p.error(e, `Invalid ${e.key} value (${v}).`); return undefined }
  const n = Number(v)
  if (n < min || n > max) { p.error(e, `Invalid ${e.key} value (${v}).`); return undefined }
  return n
}

function port (v: string | undefined, where: Where, p: ConfProblems): number | undefined {
  if (v === undefined || !/^\d+$/.test(v) || Number(v) > 65535) { p.error(where, `Invalid port value (${v ?? ''}).`); return undefined }
  return Number(v)
}

const DURATION_MS: Record<string, number> = { h: 3600e3, d: 86400e3, w: 7 * 86400e3, m: 30 * 86400e3, y: 365 * 86400e3 }

export function parseDuration (v: string): number | undefined {
  const m = /^(\d+)([hdwmy])$/.exec(v)
  if (!m) return undefined
  return Number(m[1]) * DURATION_MS[m[2]!]!
}

// ----------------------------------------------------------------------------------- option table

interface BuildState {
  cfg: Config
  /** The listener that options currently apply to; `undefined` before the first `listener` line. */
  listener: ListenerConfig | undefined
  /** The default listener of `port`/`bind_address` (mosquitto 1.x style), with its own section settings. */
  defaultListener: ListenerConfig | undefined
  /** Per-listener options seen before any `listener` line: they belong to the default listener. */
  sectionDefaults: ListenerConfig
  perListener: boolean
  p: ConfProblems
  logDestSet?: boolean
  logTypeSet?: boolean
}

type Scope = 'global' | 'listener' | 'auth'
interface OptionSpec {
  scope: Scope
  apply: (e: ConfEntry, s: BuildState, target: ListenerConfig | undefined) => void
}

function listenerTarget (s: BuildState): ListenerConfig {
  return s.listener ?? s.sectionDefaults
}

function authTarget (s: BuildState): AuthConfig {
  if (!s.perListener) return s.cfg.auth
  return listenerTarget(s).auth
}

function tls (l: ListenerConfig) {
  l.tls ??= { certfile: '', keyfile: '', requireCertificate: false, useIdentityAsUsername: false, useSubjectAsUsername: false }
  return l.tls
}

function csr (l: ListenerConfig, e: ConfEntry): CsrSigningConfig {
  const h = (l.http ??= {})
  h.csr ??= defaultCsrSigning(`${e.file}:${e.line}`)
  return h.csr
}

const NODE_ID = /^[A-Za-z0-9_.-]{1,48}$/

/** The cluster settings, created by the first cluster option; `cluster_redis` itself is checked in finishCluster. */
function cluster (s: BuildState, e: ConfEntry): ClusterConfig {
  s.cfg.cluster ??= { redisUrl: '', redisTls: false, nodeId: '', source: `${e.file}:${e.line}` }
  return s.cfg.cluster
}

/** A URL for messages: the password, if any, replaced. */
export function redactUrl (v: string): string {
  return v.replace(/^(\w+:\/\/[^:@/]*:)[^@/]*@/, '$1[redacted]@')
}

function checkRedisUrl (v: string): string | undefined {
  let u: URL
  try { u = new URL(v) } catch { return 'not a URL; expected redis://host:port/db.' }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') return `scheme ${u.protocol} is not redis: or rediss:.`
  if (u.hostname === '') return 'no host.'
  if (u.pathname !== '' && u.pathname !== '/' && !/^\/\d{1,2}$/.test(u.pathname)) return `database ${u.pathname.slice(1)} is not a number.`
  return undefined
}

/** Cluster options without `cluster_redis`, or options that do not apply to a cluster node. */
function finishCluster (cfg: Config, p: ConfProblems): void {
  const c = cfg.cluster
  if (c === undefined) return
  if (c.redisUrl === '') { p.error(undefined, `cluster_redis_* / node_id given without cluster_redis (${c.source}).`); return }
  if (c.nodeId === '') c.nodeId = hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 48) || 'midge'
  if (cfg.persistence.enabled) p.warn(undefined, 'persistence true is ignored with cluster_redis: sessions, queues and retained messages are stored in Redis.')
  if (cfg.persistence.clientExpirationMs > 0) p.warn(undefined, 'persistent_client_expiration is not supported with cluster_redis yet: persistent sessions stored in Redis do not expire.')
}

const IGNORED: Record<string, string> = {
  user: 'Midge does not change user; run it as the user it should run as (systemd DynamicUser, Docker USER).',
  autosave_interval: 'Midge writes every change through to its store; there is nothing to autosave.',
  autosave_on_changes: 'Midge writes every change through to its store; there is nothing to autosave.',
  log_timestamp_format: 'Midge logs ISO-8601 time in JSON lines.',
  websockets_log_level: 'use log_type websockets.',
  set_tcp_nodelay: 'Midge always sets TCP_NODELAY.',
  check_retain_source: 'not implemented; ignored.',
  upgrade_outgoing_qos: 'not implemented; ignored.',
  memory_limit: 'use max_queued_messages/max_queued_bytes to bound memory.'
}

/** Recognised mosquitto options that Midge does not implement: a start-up error, never silently ignored. */
const UNSUPPORTED = new Set([
  'mount_point', 'psk_hint', 'psk_file', 'psk', 'crlfile', 'dhparamfile', 'http_dir', 'websockets_headers_size',
  'allow_zero_length_clientid', 'auto_id_prefix', 'clientid_prefixes', 'allow_duplicate_messages',
  'max_qos', 'max_packet_size', 'queue_qos0_messages', 'persistent_client_expiration_interval', 'use_username_as_clientid',
  'require_certificate_revocation', 'ocsp', 'plugin', 'global_plugin', 'plugin_opt', 'auth_opt', 'password_file_hash'
])

const OPTIONS: Record<string, OptionSpec> = {
  // ---- listeners
  listener: {
    scope: 'global',
    apply (e, s) {
      const prt = port(e.args[0], e, s.p)
      if (prt === undefined) return
      const l = defaultListener(prt, `${e.file}:${e.line}`)
      if (e.args[1]) l.bindAddress = e.args[1]
      if (e.args.length > 2) s.p.warn(e, `Extra arguments after listener ignored: ${e.args.slice(2).join(' ')}`)
      s.cfg.listeners.push(l)
      s.listener = l
    }
  },
  port: {
    scope: 'global',
    apply (e, s) {
      const prt = port(e.args[0], e, s.p)
      if (prt === undefined) return
      s.p.warn(e, 'The \'port\' option is deprecated; use \'listener\' instead.')
      s.defaultListener ??= s.sectionDefaults
      s.defaultListener.port = prt
    }
  },
  bind_address: {
    scope: 'global',
    apply (e, s) {
      const v = one(e, s.p)
      if (v === undefined) return
      s.p.warn(e, 'The \'bind_address\' option is deprecated; use \'listener PORT ADDRESS\' instead.')
      s.defaultListener ??= s.sectionDefaults
      s.defaultListener.bindAddress = v
    }
  },
  protocol: {
    scope: 'listener',
    apply (e, s, l) {
      const v = one(e, s.p)
      if (v === 'mqtt' || v === 'websockets' || v === 'http') l!.protocol = v
      else if (v !== undefined) s.p.error(e, `Invalid protocol value (${v}).`)
    }
  },
  socket_domain: {
    scope: 'listener',
    apply (e, s, l) {
      const v = one(e, s.p)
      if (v === 'ipv4' || v === 'ipv6') l!.socketDomain = v
      else if (v !== undefined) s.p.error(e, `Invalid socket_domain value (${v}).`)
    }
  },
  max_connections: { scope: 'listener', apply (e, s, l) { const n = int(e, s.p, -1, 1e9); if (n !== undefined) l!.maxConnections = n } },
  // ---- TLS (per listener)
  cafile: { scope: 'listener', apply (e, s, l) { const v = one(e, s.p); if (v) tls(l!).cafile = v } },
  capath: { scope: 'listener', apply (e, s, l) { const v = one(e, s.p); if (v) tls(l!).capath = v } },
  certfile: { scope: 'listener', apply (e, s, l) { const v = one(e, s.p); if (v) tls(l!).certfile = v } },
  keyfile: { scope: 'listener', apply (e, s, l) { const v = one(e, s.p); if (v) tls(l!).keyfile = v } },
  require_certificate: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) tls(l!).requireCertificate = v } },
  use_identity_as_username: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) tls(l!).useIdentityAsUsername = v } },
  use_subject_as_username: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) tls(l!).useSubjectAsUsername = v } },
  tls_version: {
    scope: 'listener',
    apply (e, s, l) {
      const v = one(e, s.p)
      if (v === undefined) return
      if (!['tlsv1.1', 'tlsv1.2', 'tlsv1.3'].includes(v)) { s.p.error(e, `Unsupported tls_version "${v}".`); return }
      tls(l!).tlsVersion = v
    }
  },
  ciphers: { scope: 'listener', apply (e, s, l) { const v = one(e, s.p); if (v) tls(l!).ciphers = v } },
  // Midge extension (not in mosquitto): serve an expired certificate on purpose, e.g. a client-testing port
  allow_expired_certificate: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) tls(l!).allowExpiredCertificate = v } },
  // ---- authentication / authorisation (global, or per listener with per_listener_settings)
  per_listener_settings: { scope: 'global', apply (e, s) { bool(e, s.p) /* pre-scanned */ } },
  allow_anonymous: { scope: 'auth', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) authTarget(s).allowAnonymous = v } },
  password_file: { scope: 'auth', apply (e, s) { const v = one(e, s.p); if (v) authTarget(s).passwordFile = resolve(v) } },
  acl_file: { scope: 'auth', apply (e, s) { const v = one(e, s.p); if (v) authTarget(s).aclFile = resolve(v) } },
  auth_plugin: {
    scope: 'auth',
    apply (e, s) {
      const v = one(e, s.p)
      if (v) authTarget(s).plugins.push({ path: resolve(v), options: {} })
    }
  },
  // ---- persistence
  persistence: { scope: 'global', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) s.cfg.persistence.enabled = v } },
  persistence_location: { scope: 'global', apply (e, s) { const v = one(e, s.p); if (v) s.cfg.persistence.location = v } },
  persistence_file: { scope: 'global', apply (e, s) { const v = one(e, s.p); if (v) s.cfg.persistence.file = v } },
  persistence_sync: { scope: 'global', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) s.cfg.persistence.sync = v } },
  persistent_client_expiration: {
    scope: 'global',
    apply (e, s) {
      const v = one(e, s.p)
      if (v === undefined) return
      const ms = parseDuration(v)
      if (ms === undefined) s.p.error(e, `Invalid persistent_client_expiration duration (${v}).`)
      else s.cfg.persistence.clientExpirationMs = ms
    }
  },
  // ---- several nodes on one Redis (Midge extensions; src/cluster/)
  cluster_redis: {
    scope: 'global',
    apply (e, s) {
      const v = one(e, s.p)
      if (v === undefined) return
      const problem = checkRedisUrl(v)
      if (problem !== undefined) { s.p.error(e, `Invalid cluster_redis value (${redactUrl(v)}): ${problem}`); return }
      const c = cluster(s, e)
      c.redisUrl = v
      c.source = `${e.file}:${e.line}`
      if (v.startsWith('rediss:')) c.redisTls = true
    }
  },
  cluster_redis_password: { scope: 'global', apply (e, s) { const v = one(e, s.p); if (v) cluster(s, e).redisPassword = v } },
  cluster_redis_tls: { scope: 'global', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) cluster(s, e).redisTls = v } },
  cluster_redis_cafile: { scope: 'global', apply (e, s) { const v = one(e, s.p); if (v) cluster(s, e).redisCafile = resolve(v) } },
  node_id: {
    scope: 'global',
    apply (e, s) {
      const v = one(e, s.p)
      if (v === undefined) return
      // it becomes part of aedes' broker id: Redis keys split on ':' and $SYS topics on '/'
      if (!NODE_ID.test(v)) { s.p.error(e, `Invalid node_id value (${v}): use 1 to 48 letters, digits, '_', '.' or '-'.`); return }
      cluster(s, e).nodeId = v
    }
  },
  // ---- limits
  max_keepalive: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 65535); if (n !== undefined) s.cfg.limits.maxKeepalive = n } },
  message_size_limit: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 268435455); if (n !== undefined) s.cfg.limits.messageSizeLimit = n } },
  max_inflight_messages: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 65535); if (n !== undefined) s.cfg.limits.maxInflightMessages = n } },
  max_queued_messages: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 1e9); if (n !== undefined) s.cfg.limits.maxQueuedMessages = n } },
  max_queued_bytes: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 1e15); if (n !== undefined) s.cfg.limits.maxQueuedBytes = n } },
  retain_available: { scope: 'global', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) s.cfg.limits.retainAvailable = v } },
  connect_timeout: { scope: 'global', apply (e, s) { const n = int(e, s.p, 1, 3600); if (n !== undefined) s.cfg.limits.connectTimeoutMs = n * 1000 } },
  max_connection_rate: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 1e6); if (n !== undefined) s.cfg.limits.maxConnectionRate = n } },
  max_topic_length: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 65535); if (n !== undefined) s.cfg.limits.maxTopicLength = n } },
  max_subscriptions_per_client: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 1e9); if (n !== undefined) s.cfg.limits.maxSubscriptionsPerClient = n } },
  sys_interval: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 65535); if (n !== undefined) s.cfg.sysInterval = n } },
  // ---- HTTP on websockets listeners (Midge extensions; src/http/)
  http_metrics: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) (l!.http ??= {}).metrics = v } },
  http_csr_signing: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) { const c = csr(l!, e); c.enabled = v; c.source = `${e.file}:${e.line}` } } },
  http_csr_cafile: { scope: 'listener', apply (e, s, l) { const v = one(e, s.p); if (v) csr(l!, e).cafile = resolve(v) } },
  http_csr_keyfile: { scope: 'listener', apply (e, s, l) { const v = one(e, s.p); if (v) csr(l!, e).keyfile = resolve(v) } },
  http_csr_days: { scope: 'listener', apply (e, s, l) { const n = int(e, s.p, 1, 3650); if (n !== undefined) csr(l!, e).days = n } },
  http_csr_rate_limit: { scope: 'listener', apply (e, s, l) { const n = int(e, s.p, 1, 100000); if (n !== undefined) csr(l!, e).ratePerHour = n } },
  // ---- admin API and web console (Midge extensions; src/admin/): off unless a listener enables it
  admin_enabled: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) { (l!.http ??= {}).admin = v; s.cfg.admin.source ??= `${e.file}:${e.line}` } } },
  admin_password_file: { scope: 'global', apply (e, s) { const v = one(e, s.p); if (v) { s.cfg.admin.passwordFile = resolve(v); s.cfg.admin.source ??= `${e.file}:${e.line}` } } },
  admin_token_file: { scope: 'global', apply (e, s) { const v = one(e, s.p); if (v) { s.cfg.admin.tokenFile = resolve(v); s.cfg.admin.source ??= `${e.file}:${e.line}` } } },
  deny_bare_wildcard_subscription: {
    scope: 'listener',
    apply (e, s, l) {
      const v = one(e, s.p)
      if (v === 'anonymous' || v === 'all') l!.denyBareWildcard = v
      else if (v === 'none') delete l!.denyBareWildcard
      else if (v !== undefined) s.p.error(e, `Invalid deny_bare_wildcard_subscription value (${v}).`)
    }
  },
  // ---- logging and housekeeping
  log_dest: {
    scope: 'global',
    apply (e, s) {
      const kind = e.args[0]
      let dest: LogDest | undefined
      if (kind === 'stdout' || kind === 'stderr' || kind === 'none') dest = { kind }
      else if (kind === 'file') {
        const path = e.args.slice(1).join(' ')
        if (!path) { s.p.error(e, 'Empty log_dest file value in configuration.'); return }
        dest = { kind: 'file', path: resolve(path) }
      } else if (kind === 'syslog' || kind === 'topic' || kind === 'dlt') {
        s.p.warn(e, `log_dest ${kind} is not supported by Midge; logging to stderr instead (journald collects it under systemd).`)
        dest = { kind: 'stderr' }
      } else { s.p.error(e, `Invalid log_dest value (${kind ?? ''}).`); return }
      if (!s.logDestSet) { s.cfg.log.dest = []; s.logDestSet = true }
      s.cfg.log.dest.push(dest!)
    }
  },
  log_type: {
    scope: 'global',
    apply (e, s) {
      const v = one(e, s.p)
      if (v === undefined) return
      if (!s.logTypeSet) { s.cfg.log.types = []; s.logTypeSet = true }
      if (v === 'all') s.cfg.log.types = [...LOG_TYPES]
      else if (v === 'none') s.cfg.log.types = []
      else if ((LOG_TYPES as readonly string[]).includes(v)) { if (!s.cfg.log.types.includes(v as LogType)) s.cfg.log.types.push(v as LogType) } else s.p.error(e, `Invalid log_type value (${v}).`)
    }
  },
  connection_messages: { scope: 'global', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) s.cfg.log.connectionMessages = v } },
  log_timestamp: { scope: 'global', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) s.cfg.log.timestamp = v } },
  pid_file: { scope: 'global', apply (e, s) { const v = one(e, s.p); if (v) s.cfg.pidFile = resolve(v) } }
}

// bridges: `connection NAME` and the options of its block (src/bridge/config.ts)
for (const key of BRIDGE_KEYS) OPTIONS[key] = { scope: 'global', apply: (e, s) => applyBridgeOption(e, s.cfg, s.p) }

/** Options that later modules add (admin API, cluster, ...) register here, keeping one table. */
export function registerOption (key: string, scope: Scope, apply: (e: ConfEntry, cfg: Config, p: ConfProblems, listener: ListenerConfig | undefined) => void): void {
  OPTIONS[key] = { scope, apply: (e, s, l) => apply(e, s.cfg, s.p, l) }
}

export function knownOptions (): string[] {
  return Object.keys(OPTIONS).sort()
}

/** Applies entries (in order) on top of the defaults. Problems are collected into `p`. */
export function buildConfig (entries: ConfEntry[], p: ConfProblems): Config {
  const cfg = defaultConfig()
  // per_listener_settings changes where auth options land, wherever it appears in the file: read it first.
  const pls = entries.filter(e => e.key === 'per_listener_settings').pop()
  const state: BuildState = {
    cfg,
    listener: undefined,
    defaultListener: undefined,
    sectionDefaults: defaultListener(MQTT_DEFAULT_PORT, 'default listener'),
    perListener: pls?.args[0] === 'true',
    p
  }
  cfg.perListenerSettings = state.perListener
  let anonymousSet = false
  for (const e of entries) {
    if (e.key === 'allow_anonymous') anonymousSet = true
    const spec = OPTIONS[e.key]
    if (!spec) {
      if (e.key.startsWith('auth_opt_') && e.key.length > 9) {
        // mosquitto: options for the auth_plugin declared before this line (src/auth/plugin.ts)
        const plugins = authTarget(state).plugins
        const last = plugins[plugins.length - 1]
        if (!last) p.error(e, `${e.key} given before any auth_plugin.`)
        else last.options[e.key.slice(9)] = e.args.join(' ')
        continue
      }
      if (e.key in IGNORED) p.warn(e, `Option ${e.key} ignored: ${IGNORED[e.key]}`)
      else if (UNSUPPORTED.has(e.key) || e.key.startsWith('bridge_') || e.key.startsWith('plugin_opt_') || e.key.startsWith('auth_opt_')) {
        p.error(e, `Configuration option "${e.key}" is not supported by Midge.`)
      } else p.error(e, `Unknown configuration variable "${e.key}".`)
      continue
    }
    const target = spec.scope === 'listener' ? listenerTarget(state) : undefined
    spec.apply(e, state, target)
  }
  if (state.defaultListener) {
    state.defaultListener.source = 'default listener (port/bind_address)'
    cfg.listeners.unshift(state.defaultListener)
  }
  if (cfg.listeners.length === 0) {
    // mosquitto 2: no listener configured -> "local only mode", loopback only, anonymous allowed unless said otherwise
    cfg.localOnly = true
    const l = { ...state.sectionDefaults, bindAddress: '127.0.0.1', source: 'local only mode' }
    cfg.listeners.push(l)
    if (!anonymousSet) { cfg.auth.allowAnonymous = true; l.auth.allowAnonymous = true }
  }
  finishListeners(cfg, p)
  finishAdmin(cfg, p)
  finishCluster(cfg, p)
  finishBridges(cfg, p)
  cfg.warnings.push(...p.warnings)
  return cfg
}

/** Normalises protocol + TLS to a transport, resolves auth per listener, names listeners. */
export function finishListeners (cfg: Config, p: ConfProblems): void {
  const ids = new Map<string, number>()
  for (const l of cfg.listeners) {
    const secure = l.tls !== undefined && (l.tls.certfile !== '' || l.tls.keyfile !== '')
    if (l.tls && !secure && (l.tls.cafile || l.tls.capath || l.tls.requireCertificate)) {
      p.error(undefined, `Listener at ${l.source}: cafile/capath/require_certificate given without certfile and keyfile.`)
    }
    if (secure && (l.tls!.certfile === '' || l.tls!.keyfile === '')) {
      p.error(undefined, `Listener at ${l.source}: both certfile and keyfile must be provided.`)
    }
    if (secure && l.tls!.requireCertificate && !l.tls!.cafile && !l.tls!.capath) {
      p.error(undefined, `Listener at ${l.source}: require_certificate needs cafile or capath.`)
    }
    if (!secure) delete l.tls
    const csrCfg = l.http?.csr
    if (csrCfg && !csrCfg.enabled) delete l.http!.csr
    else if (csrCfg) {
      // the CSR page needs an HTTP-serving listener and the CA that signs
      if (l.protocol === 'mqtt') p.error(undefined, `http_csr_signing needs a websockets or http listener (${csrCfg.source}).`)
      if (!csrCfg.cafile || !csrCfg.keyfile) p.error(undefined, `http_csr_signing needs http_csr_cafile and http_csr_keyfile (${csrCfg.source}).`)
    }
    l.transport = l.protocol === 'websockets' ? (secure ? 'wss' : 'ws') : l.protocol === 'http' ? (secure ? 'https' : 'http') : (secure ? 'tls' : 'tcp')
    if (!cfg.perListenerSettings) l.auth = structuredClone(cfg.auth)
    const base = `${l.transport}:${l.port}`
    const n = (ids.get(base) ?? 0) + 1
    ids.set(base, n)
    l.id = n === 1 ? base : `${base}-${n}`
  }
  // anyone may get a certificate with any common name from the CSR page, so its CA must not be one
  // whose certificates become user names on some listener
  const csrCas = new Set(cfg.listeners.flatMap(l => l.http?.csr ? [resolve(l.http.csr.cafile)] : []))
  for (const l of cfg.listeners) {
    const t = l.tls
    if (t?.cafile && (t.useIdentityAsUsername || t.useSubjectAsUsername) && csrCas.has(resolve(t.cafile))) {
      p.error(undefined, `Listener at ${l.source}: use_identity_as_username/use_subject_as_username trusts the CA of the CSR signing page (${t.cafile}): anyone could get a certificate naming any user. Give http_csr_cafile a CA of its own.`)
    }
  }
}

/**
 * The admin API: only on websockets listeners, only with a credential, never with the MQTT users'
 * password file as the admin credential, and with a warning when it would be reachable without TLS.
 */
function finishAdmin (cfg: Config, p: ConfProblems): void {
  const a = cfg.admin
  const on = cfg.listeners.filter(l => l.http?.admin === true)
  for (const l of cfg.listeners) {
    if (l.http?.admin === true && l.protocol !== 'websockets') p.error(undefined, `admin_enabled needs a websockets listener (listener at ${l.source}).`)
  }
  if (on.length === 0) {
    if (a.passwordFile || a.tokenFile) p.warn(undefined, `admin_password_file/admin_token_file given but no listener sets admin_enabled true: the admin API is off (${a.source ?? ''}).`)
    return
  }
  if (!a.passwordFile && !a.tokenFile) p.error(undefined, `admin_enabled true needs admin_password_file or admin_token_file (${a.source ?? ''}).`)
  const mqttFiles = [cfg.auth.passwordFile, ...cfg.listeners.map(l => l.auth.passwordFile)]
  if (a.passwordFile && mqttFiles.includes(a.passwordFile)) p.error(undefined, `admin_password_file must not be a password_file of MQTT users: the admin credential is separate (${a.source ?? ''}).`)
  if (a.tokenFile && a.tokenFile === a.passwordFile) p.error(undefined, `admin_token_file and admin_password_file must be different files (${a.source ?? ''}).`)
  for (const l of on) {
    const local = l.bindAddress === '127.0.0.1' || l.bindAddress === '::1' || l.bindAddress === 'localhost'
    if (l.transport !== 'wss' && !local) p.warn(undefined, `The admin API on listener ${l.id} (${l.source}) is reachable without TLS: admin passwords and session cookies cross the network in clear text. Give it certfile/keyfile or bind it to 127.0.0.1.`)
  }
}

export function parseConfFile (path: string): { config: Config, problems: ConfProblems } {
  const p = new ConfProblems()
  const entries = readConfFile(path, p)
  const config = buildConfig(entries, p)
  config.configFile = resolve(path)
  return { config, problems: p }
}

export { defaultAuth }
