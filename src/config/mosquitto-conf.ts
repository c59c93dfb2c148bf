/**
 * mosquitto.conf reader: a lexer that turns files into entries carrying file:line, and one option table that
 * maps mosquitto's snake_case keys onto the typed Config. Errors use mosquitto's wording and always name
 * file:line and the option; every problem in the file is collected, not just the first.
 *
 * mosquitto 2.0's reading rules, each checked against Debian's mosquitto 2.0.11:
 * - a path or string value (password_file, certfile, psk_hint, ...) is the rest of the line, spaces included,
 *   with surrounding blanks trimmed; a `#` after it is part of the value. Numbers, booleans and words take the
 *   first token, so a trailing `# comment` after them is ignored;
 * - a string option given twice in one scope is an error ("Duplicate password_file value in configuration.");
 * - `include_dir` is read from the main file only; its `*.conf` files are read in mosquitto's order
 *   (case-insensitive, an upper-case letter before the same lower-case one), and a relative directory is
 *   resolved from the working directory, as every other relative path;
 * - listener options before the first `listener` line belong to mosquitto's default listener (port 1883, or
 *   `port`): when one of them differs from its default, that listener is opened too.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { resolve, join } from 'node:path'
import { hostname } from 'node:os'
import {
  type Config, type ClusterConfig, type ListenerConfig, type AuthConfig, type LogType, type LogDest, type CsrSigningConfig,
  type AuthPluginConfig, defaultConfig, defaultListener, defaultCsrSigning, LOG_TYPES, MQTT_DEFAULT_PORT
} from './schema.js'
import { one, str, strOnce, bool, int } from './values.js'
import { applyBridgeOption, BRIDGE_KEYS, finishBridges } from './bridge.js'

export interface ConfEntry {
  key: string
  /** The value split on blanks, a trailing `# comment` after the first value left out. */
  args: string[]
  /** The whole value as mosquitto reads string options: the rest of the line, surrounding blanks trimmed. */
  rest: string
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
    const m = /^(\S+)\s*(.*)$/.exec(trimmed)!
    const key = m[1]!
    const rest = m[2]!
    const tokens = rest === '' ? [] : rest.split(/\s+/)
    // after the first value, a token starting with '#' begins a trailing comment (mosquitto reads only the tokens
    // it needs); the first value is taken as it is, so a password or path may start with '#'
    const hash = tokens.findIndex((t, i) => i > 0 && t.startsWith('#'))
    const args = hash < 0 ? tokens : tokens.slice(0, hash)
    entries.push({ key, args, rest, file, line: i + 1 })
  }
  return entries
}

/** mosquitto's include_dir order: letters compared case-insensitively, an upper-case letter first on a tie. */
export function includeDirOrder (a: string, b: string): number {
  const ua = a.toUpperCase()
  const ub = b.toUpperCase()
  if (ua !== ub) return ua < ub ? -1 : 1
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * Reads a config file, expanding `include_dir` in place (every `*.conf` in mosquitto's order). As in mosquitto,
 * only the main file's include_dir lines are read: one in an included file is ignored, with a warning here.
 */
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
  return expandIncludes(lexConf(text, file), problems, depth)
}

/** The entries with each `include_dir` replaced by the entries of its files (main file only: depth 0). */
export function expandIncludes (entries: ConfEntry[], problems: ConfProblems, depth = 0): ConfEntry[] {
  const out: ConfEntry[] = []
  for (const entry of entries) {
    if (entry.key !== 'include_dir') { out.push(entry); continue }
    const dir = entry.rest
    if (!dir) { problems.error(entry, 'Empty include_dir value in configuration.'); continue }
    if (depth > 0) { problems.warn(entry, 'include_dir is only read from the main config file (as in mosquitto); this one is ignored.'); continue }
    const abs = resolve(dir)
    let names: string[]
    try {
      if (!statSync(abs).isDirectory()) throw new Error('not a directory')
      names = readdirSync(abs).filter(n => n.endsWith('.conf')).sort(includeDirOrder)
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
  /** Listener (and, with per_listener_settings, auth) options applied to sectionDefaults, for the warnings. */
  beforeListener: ConfEntry[]
  perListener: boolean
  p: ConfProblems
  logDestSet?: boolean
  logTypeSet?: boolean
  persistenceLocation?: string
  persistenceFile?: string
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

/** The plug-in that `auth_opt_*` / `plugin_opt_*` / `auth_plugin_deny_special_chars` refer to: the last one declared. */
function lastPlugin (s: BuildState): AuthPluginConfig | undefined {
  const plugins = authTarget(s).plugins
  return plugins[plugins.length - 1]
}

/** A native mosquitto plug-in cannot run in Node: refusing it beats starting without the checks it makes. */
const NATIVE_PLUGIN = /\.(so|dll|dylib)(\.\d+)*$/

function csr (l: ListenerConfig, e: ConfEntry): CsrSigningConfig {
  const h = (l.http ??= {})
  h.csr ??= defaultCsrSigning(`${e.file}:${e.line}`)
  return h.csr
}

const NODE_ID = /^[A-Za-z0-9_.-]{1,48}$/
/** mosquitto's floor for `max_packet_size`: smaller would refuse ordinary CONNECTs. */
const MIN_PACKET_SIZE = 20

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

/** mosquitto options Midge accepts without acting on them: one warning each, saying what Midge does instead. */
const IGNORED: Record<string, string> = {
  user: 'Midge does not change user; run it as the user it should run as (systemd DynamicUser, Docker USER).',
  autosave_interval: 'Midge writes every change through to its store; there is nothing to autosave.',
  autosave_on_changes: 'Midge writes every change through to its store; there is nothing to autosave.',
  log_timestamp_format: 'Midge logs ISO-8601 time in JSON lines.',
  log_facility: 'Midge does not write to syslog; it logs to stderr (journald collects it under systemd).',
  websockets_log_level: 'use log_type websockets.',
  set_tcp_nodelay: 'Midge always sets TCP_NODELAY.',
  check_retain_source: 'not implemented; retained messages are kept after the publisher loses write access.',
  upgrade_outgoing_qos: 'not implemented; messages are delivered at min(published QoS, subscription QoS).',
  memory_limit: 'use max_queued_messages/max_queued_bytes to bound memory.',
  max_inflight_bytes: 'Midge limits messages in flight by count (max_inflight_messages); max_queued_bytes still bounds queues by size.',
  retry_interval: 'The retry_interval option is no longer available (as in mosquitto 2.0): unacknowledged messages are resent when the client reconnects.',
  allow_duplicate_messages: 'deprecated in mosquitto 2.0; Midge sends a client one copy of a message even when several of its subscriptions match.'
}

/** Recognised mosquitto options that Midge does not implement: a start-up error, never silently ignored. */
const UNSUPPORTED = new Set([
  'psk', 'persistent_client_expiration_interval', 'require_certificate_revocation', 'ocsp', 'global_plugin', 'password_file_hash'
])

/** mosquitto's TLS engine options: the key would stay in the engine, so the listener could not serve TLS as configured. */
const ENGINE_REFUSAL = 'is not supported: Midge cannot use an OpenSSL engine, and without it the listener could not use the key the engine holds. Export the certificate and key to PEM files and give them as certfile and keyfile.'

const OPTIONS: Record<string, OptionSpec> = {
  // ---- listeners
  listener: {
    scope: 'global',
    apply (e, s) {
      const prt = port(e.args[0], e, s.p)
      if (prt === undefined) return
      const l = defaultListener(prt, `${e.file}:${e.line}`)
      const host = e.args[1]
      // mosquitto: `listener 0 PATH` is a Unix socket. Midge keeps `listener 0 ADDRESS` as "any free port" (tests,
      // ephemeral setups): a value with a '/' is a path, anything else an address.
      if (prt === 0 && host !== undefined && host.includes('/')) l.unixSocketPath = resolve(host)
      else if (host) l.bindAddress = host
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
  bind_interface: {
    scope: 'listener',
    apply (e, s, l) {
      const v = strOnce(e, s.p, l!.bindInterface)
      if (v === undefined) return
      l!.bindInterface = v
      s.p.warn(e, `bind_interface ${v}: Midge binds to the address ${v} has when it starts (IPv4 unless socket_domain ipv6), not to the device; restart after the address changes.`)
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
  max_qos: { scope: 'listener', apply (e, s, l) { maxQos(e, s, l!) } },
  // the older spelling mosquitto 2.0 still reads
  maximum_qos: { scope: 'listener', apply (e, s, l) { maxQos(e, s, l!) } },
  max_topic_alias: {
    scope: 'listener',
    apply (e, s, l) {
      const v = one(e, s.p)
      if (v === undefined) return
      if (!/^\d+$/.test(v) || Number(v) > 65535) { s.p.error(e, 'Invalid max_topic_alias value in configuration.'); return }
      l!.maxTopicAlias = Number(v)
    }
  },
  accept_protocol_versions: {
    scope: 'listener',
    apply (e, s, l) {
      if (s.listener === undefined) { s.p.error(e, 'You must define a listener before using the accept_protocol_versions option.'); return }
      const words = e.args.join(' ').split(/[\s,]+/).filter(w => w !== '')
      if (words.length === 0) { s.p.error(e, 'Empty accept_protocol_versions value in configuration.'); return }
      const versions: Array<3 | 4 | 5> = []
      for (const w of words) {
        if (w !== '3' && w !== '4' && w !== '5') { s.p.error(e, `Invalid accept_protocol_versions value (${w}): use 3, 4 and 5 (MQTT 3.1, 3.1.1, 5.0), separated by commas.`); return }
        const n = Number(w) as 3 | 4 | 5
        if (!versions.includes(n)) versions.push(n)
      }
      l!.acceptProtocolVersions = versions.sort()
    }
  },
  use_username_as_clientid: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) l!.useUsernameAsClientid = v } },
  mount_point: {
    scope: 'listener',
    apply (e, s, l) {
      if (s.listener === undefined) { s.p.error(e, 'You must use create a listener before using the mount_point option in the configuration file.'); return }
      const v = strOnce(e, s.p, l!.mountPoint)
      if (v === undefined) return
      if (/[+#]/.test(v) || v.includes('\0')) { s.p.error(e, `Invalid mount_point value (${v}): it may not contain '+', '#' or U+0000.`); return }
      l!.mountPoint = v
    }
  },
  http_dir: { scope: 'listener', apply (e, s, l) { const v = strOnce(e, s.p, l!.httpDir); if (v !== undefined) l!.httpDir = resolve(v) } },
  enable_proxy_protocol: {
    scope: 'listener',
    apply (e, s, l) {
      const v = one(e, s.p)
      if (v === '1' || v === '2') l!.proxyProtocol = Number(v) as 1 | 2
      else if (v !== undefined) s.p.error(e, `Invalid enable_proxy_protocol value (${v}): use 1 or 2 (the PROXY protocol version the proxy sends).`)
    }
  },
  // ---- TLS (per listener)
  cafile: { scope: 'listener', apply (e, s, l) { const v = strOnce(e, s.p, l!.tls?.cafile); if (v) tls(l!).cafile = v } },
  capath: { scope: 'listener', apply (e, s, l) { const v = strOnce(e, s.p, l!.tls?.capath); if (v) tls(l!).capath = v } },
  certfile: { scope: 'listener', apply (e, s, l) { const v = strOnce(e, s.p, l!.tls?.certfile || undefined); if (v) tls(l!).certfile = v } },
  keyfile: { scope: 'listener', apply (e, s, l) { const v = strOnce(e, s.p, l!.tls?.keyfile || undefined); if (v) tls(l!).keyfile = v } },
  crlfile: { scope: 'listener', apply (e, s, l) { const v = strOnce(e, s.p, l!.tls?.crlfile); if (v) tls(l!).crlfile = v } },
  dhparamfile: { scope: 'listener', apply (e, s, l) { const v = strOnce(e, s.p, l!.tls?.dhparamfile); if (v) tls(l!).dhparamfile = v } },
  psk_hint: { scope: 'listener', apply (e, s, l) { const v = strOnce(e, s.p, l!.tls?.pskHint); if (v) tls(l!).pskHint = v } },
  require_certificate: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) tls(l!).requireCertificate = v } },
  use_identity_as_username: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) tls(l!).useIdentityAsUsername = v } },
  use_subject_as_username: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) tls(l!).useSubjectAsUsername = v } },
  tls_version: {
    scope: 'listener',
    apply (e, s, l) {
      const v = strOnce(e, s.p, l!.tls?.tlsVersion)
      if (v === undefined) return
      if (!['tlsv1.1', 'tlsv1.2', 'tlsv1.3'].includes(v)) { s.p.error(e, `Unsupported tls_version "${v}".`); return }
      tls(l!).tlsVersion = v
    }
  },
  ciphers: { scope: 'listener', apply (e, s, l) { const v = strOnce(e, s.p, l!.tls?.ciphers); if (v) tls(l!).ciphers = v } },
  'ciphers_tls1.3': { scope: 'listener', apply (e, s, l) { const v = strOnce(e, s.p, l!.tls?.ciphersTls13); if (v) tls(l!).ciphersTls13 = v } },
  tls_keyform: {
    scope: 'listener',
    apply (e, s) {
      const v = one(e, s.p)
      if (v === 'engine') s.p.error(e, `tls_keyform engine ${ENGINE_REFUSAL}`)
      else if (v !== undefined && v !== 'pem') s.p.error(e, `Invalid tls_keyform value (${v}).`)
    }
  },
  tls_engine: { scope: 'listener', apply (e, s) { if (str(e, s.p) !== undefined) s.p.error(e, `tls_engine ${ENGINE_REFUSAL}`) } },
  tls_engine_kpass_sha1: { scope: 'listener', apply (e, s) { if (one(e, s.p) !== undefined) s.p.error(e, `tls_engine_kpass_sha1 ${ENGINE_REFUSAL}`) } },
  // Midge extension (not in mosquitto): serve an expired certificate on purpose, e.g. a client-testing port
  allow_expired_certificate: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) tls(l!).allowExpiredCertificate = v } },
  // ---- authentication / authorisation (global, or per listener with per_listener_settings)
  per_listener_settings: { scope: 'global', apply (e, s) { bool(e, s.p) /* pre-scanned */ } },
  allow_anonymous: { scope: 'auth', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) authTarget(s).allowAnonymous = v } },
  password_file: { scope: 'auth', apply (e, s) { const a = authTarget(s); const v = strOnce(e, s.p, a.passwordFile); if (v) a.passwordFile = resolve(v) } },
  acl_file: { scope: 'auth', apply (e, s) { const a = authTarget(s); const v = strOnce(e, s.p, a.aclFile); if (v) a.aclFile = resolve(v) } },
  psk_file: { scope: 'auth', apply (e, s) { const a = authTarget(s); const v = strOnce(e, s.p, a.pskFile); if (v) a.pskFile = resolve(v) } },
  allow_zero_length_clientid: { scope: 'auth', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) authTarget(s).allowZeroLengthClientid = v } },
  auto_id_prefix: {
    scope: 'auth',
    apply (e, s) {
      const a = authTarget(s)
      const v = strOnce(e, s.p, a.autoIdPrefix === 'auto-' ? undefined : a.autoIdPrefix)
      if (v === undefined) return
      if (/[+#]/.test(v) || v.includes('\0') || Buffer.byteLength(v) > 65535 - 36) { s.p.error(e, `Invalid auto_id_prefix value (${v}).`); return }
      a.autoIdPrefix = v
    }
  },
  // mosquitto 2.0 reads `plugin` as `auth_plugin`; both load Midge's JavaScript plug-ins (src/auth/plugin.ts)
  auth_plugin: { scope: 'auth', apply (e, s) { addPlugin(e, s) } },
  plugin: { scope: 'auth', apply (e, s) { addPlugin(e, s) } },
  auth_plugin_deny_special_chars: {
    scope: 'auth',
    apply (e, s) {
      const v = bool(e, s.p)
      if (v === undefined) return
      const last = lastPlugin(s)
      if (!last) { s.p.error(e, 'An auth_plugin_deny_special_chars option exists in the config file without an auth_plugin.'); return }
      last.denySpecialChars = v
    }
  },
  clientid_prefixes: {
    scope: 'global',
    apply (e, s) {
      const v = strOnce(e, s.p, s.cfg.clientidPrefixes)
      if (v === undefined) return
      s.p.warn(e, 'The \'clientid_prefixes\' option is deprecated in mosquitto 2.0; Midge applies it: client ids without this prefix are refused (CONNACK 5).')
      s.cfg.clientidPrefixes = v
    }
  },
  // ---- persistence
  persistence: { scope: 'global', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) s.cfg.persistence.enabled = v } },
  // the older spelling mosquitto 2.0 still reads as `persistence`
  retained_persistence: { scope: 'global', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) s.cfg.persistence.enabled = v } },
  persistence_location: { scope: 'global', apply (e, s) { const v = strOnce(e, s.p, s.persistenceLocation); if (v) { s.persistenceLocation = v; s.cfg.persistence.location = v } } },
  persistence_file: { scope: 'global', apply (e, s) { const v = strOnce(e, s.p, s.persistenceFile); if (v) { s.persistenceFile = v; s.cfg.persistence.file = v } } },
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
  queue_qos0_messages: {
    scope: 'global',
    apply (e, s) {
      const v = bool(e, s.p)
      if (v !== undefined) s.cfg.limits.queueQos0Messages = v
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
  cluster_redis_cafile: { scope: 'global', apply (e, s) { const v = str(e, s.p); if (v) cluster(s, e).redisCafile = resolve(v) } },
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
  max_packet_size: {
    scope: 'global',
    apply (e, s) {
      const n = int(e, s.p, 0, 268435460)
      if (n === undefined) return
      // mosquitto: "Setting below 20 bytes is forbidden" (a CONNECT alone needs more). 0 is refused too, as
      // mosquitto 2.0 refuses it: "no limit" is the default, written by leaving the option out.
      if (n < MIN_PACKET_SIZE) { s.p.error(e, `Invalid max_packet_size value (${n}): setting below ${MIN_PACKET_SIZE} bytes is forbidden; leave the option out for no limit.`); return }
      s.cfg.limits.maxPacketSize = n
    }
  },
  max_inflight_messages: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 65535); if (n !== undefined) s.cfg.limits.maxInflightMessages = n } },
  max_queued_messages: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 1e9); if (n !== undefined) s.cfg.limits.maxQueuedMessages = n } },
  max_queued_bytes: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 1e15); if (n !== undefined) s.cfg.limits.maxQueuedBytes = n } },
  retain_available: { scope: 'global', apply (e, s) { const v = bool(e, s.p); if (v !== undefined) s.cfg.limits.retainAvailable = v } },
  connect_timeout: { scope: 'global', apply (e, s) { const n = int(e, s.p, 1, 3600); if (n !== undefined) s.cfg.limits.connectTimeoutMs = n * 1000 } },
  max_connection_rate: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 1e6); if (n !== undefined) s.cfg.limits.maxConnectionRate = n } },
  max_topic_length: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 65535); if (n !== undefined) s.cfg.limits.maxTopicLength = n } },
  max_subscriptions_per_client: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 1e9); if (n !== undefined) s.cfg.limits.maxSubscriptionsPerClient = n } },
  sys_interval: { scope: 'global', apply (e, s) { const n = int(e, s.p, 0, 65535); if (n !== undefined) s.cfg.sysInterval = n } },
  websockets_headers_size: {
    scope: 'global',
    apply (e, s) {
      const n = int(e, s.p, 0, 1048576)
      if (n === undefined) return
      if (n === 0) delete s.cfg.websocketsHeadersSize
      else s.cfg.websocketsHeadersSize = n
    }
  },
  // ---- HTTP on websockets listeners (Midge extensions; src/http/)
  http_metrics: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) (l!.http ??= {}).metrics = v } },
  http_csr_signing: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) { const c = csr(l!, e); c.enabled = v; c.source = `${e.file}:${e.line}` } } },
  http_csr_cafile: { scope: 'listener', apply (e, s, l) { const v = str(e, s.p); if (v) csr(l!, e).cafile = resolve(v) } },
  http_csr_keyfile: { scope: 'listener', apply (e, s, l) { const v = str(e, s.p); if (v) csr(l!, e).keyfile = resolve(v) } },
  http_csr_days: { scope: 'listener', apply (e, s, l) { const n = int(e, s.p, 1, 3650); if (n !== undefined) csr(l!, e).days = n } },
  http_csr_rate_limit: { scope: 'listener', apply (e, s, l) { const n = int(e, s.p, 1, 100000); if (n !== undefined) csr(l!, e).ratePerHour = n } },
  // ---- admin API and web console (Midge extensions; src/admin/): off unless a listener enables it
  admin_enabled: { scope: 'listener', apply (e, s, l) { const v = bool(e, s.p); if (v !== undefined) { (l!.http ??= {}).admin = v; s.cfg.admin.source ??= `${e.file}:${e.line}` } } },
  admin_password_file: { scope: 'global', apply (e, s) { const v = str(e, s.p); if (v) { s.cfg.admin.passwordFile = resolve(v); s.cfg.admin.source ??= `${e.file}:${e.line}` } } },
  admin_token_file: { scope: 'global', apply (e, s) { const v = str(e, s.p); if (v) { s.cfg.admin.tokenFile = resolve(v); s.cfg.admin.source ??= `${e.file}:${e.line}` } } },
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
        // mosquitto: the path is the rest of the line
        const path = e.rest.slice(4).trim()
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
  pid_file: { scope: 'global', apply (e, s) { const v = strOnce(e, s.p, s.cfg.pidFile); if (v) s.cfg.pidFile = resolve(v) } }
}

// bridges: `connection NAME` and the options of its block (bridge.ts)
for (const key of BRIDGE_KEYS) OPTIONS[key] = { scope: 'global', apply: (e, s) => applyBridgeOption(e, s.cfg, s.p) }

/** Options that are an error before the first listener line (they never reach the default listener). */
const NEEDS_LISTENER = new Set(['mount_point', 'accept_protocol_versions'])

function maxQos (e: ConfEntry, s: BuildState, l: ListenerConfig): void {
  const v = one(e, s.p)
  if (v === undefined) return
  if (v !== '0' && v !== '1' && v !== '2') { s.p.error(e, 'max_qos must be between 0 and 2 inclusive.'); return }
  l.maxQos = Number(v) as 0 | 1 | 2
}

function addPlugin (e: ConfEntry, s: BuildState): void {
  const v = str(e, s.p)
  if (v === undefined) return
  if (NATIVE_PLUGIN.test(v)) {
    s.p.error(e, `${e.key} ${v} is a native mosquitto plug-in: Midge loads JavaScript plug-ins (ES modules, see config/auth-plugin-example.js), and starting without the checks this one makes would be unsafe.`)
    return
  }
  authTarget(s).plugins.push({ path: resolve(v), options: {}, denySpecialChars: true, option: e.key })
}

/** `auth_opt_NAME VALUE` / `plugin_opt_NAME VALUE`: an option of the last plug-in; the value is the rest of the line. */
function pluginOption (e: ConfEntry, s: BuildState, prefix: string): void {
  const name = e.key.slice(prefix.length)
  const last = lastPlugin(s)
  if (!last) { s.p.error(e, `${prefix === 'auth_opt_' ? 'An' : 'A'} ${prefix} option exists in the config file without an auth_plugin.`); return }
  last.options[name] = e.rest
}

/** Applies entries (in order) on top of the defaults. Problems are collected into `p`. */
export function buildConfig (entries: ConfEntry[], p: ConfProblems): Config {
  const cfg = defaultConfig()
  // per_listener_settings changes where auth options land; it must come before them (checked below): read it first.
  const pls = entries.filter(e => e.key === 'per_listener_settings').pop()
  const state: BuildState = {
    cfg,
    listener: undefined,
    defaultListener: undefined,
    sectionDefaults: defaultListener(MQTT_DEFAULT_PORT, 'default listener'),
    beforeListener: [],
    perListener: pls?.args[0] === 'true',
    p
  }
  cfg.perListenerSettings = state.perListener
  let anonymousSet = false
  let securitySeen = false
  for (const e of entries) {
    if (e.key === 'allow_anonymous') anonymousSet = true
    // mosquitto 2.0.11 refuses this order: the options before it would have gone to the global settings
    if (e.key === 'per_listener_settings' && e.args[0] === 'true' && securitySeen) p.error(e, 'per_listener_settings must be set before any other security settings.')
    if (OPTIONS[e.key]?.scope === 'auth' || e.key.startsWith('auth_opt_') || e.key.startsWith('plugin_opt_')) securitySeen = true
    const spec = OPTIONS[e.key]
    if (!spec) {
      if (e.key.length > 9 && e.key.startsWith('auth_opt_')) { pluginOption(e, state, 'auth_opt_'); continue }
      if (e.key.length > 11 && e.key.startsWith('plugin_opt_')) { pluginOption(e, state, 'plugin_opt_'); continue }
      if (e.key in IGNORED) p.warn(e, `Option ${e.key} ignored: ${IGNORED[e.key]}`)
      else if (UNSUPPORTED.has(e.key) || e.key.startsWith('bridge_')) {
        p.error(e, `Configuration option "${e.key}" is not supported by Midge.`)
      } else p.error(e, `Unknown configuration variable "${e.key}".`)
      continue
    }
    if (state.listener === undefined && !NEEDS_LISTENER.has(e.key) && (spec.scope === 'listener' || (spec.scope === 'auth' && state.perListener))) state.beforeListener.push(e)
    const target = spec.scope === 'listener' ? listenerTarget(state) : undefined
    spec.apply(e, state, target)
  }
  placeDefaultListener(state)
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

/**
 * What makes mosquitto open its default listener when options precede the first `listener` line: any of these
 * differing from its default (mosquitto's config__parse_args). Other listener options there apply to nothing.
 */
function defaultListenerReasons (d: ListenerConfig, perListener: boolean): boolean {
  const t = d.tls
  const a = d.auth
  return d.bindInterface !== undefined || t !== undefined || d.useUsernameAsClientid || d.maxConnections !== -1 ||
    d.maxQos !== 2 || d.protocol !== 'mqtt' || d.socketDomain !== undefined ||
    (perListener && (a.passwordFile !== undefined || a.pskFile !== undefined || a.plugins.length > 0 || !a.allowZeroLengthClientid))
}

function placeDefaultListener (s: BuildState): void {
  const { cfg, p } = s
  const before = s.beforeListener
  const opens = s.defaultListener !== undefined || defaultListenerReasons(s.sectionDefaults, s.perListener)
  if (opens && (cfg.listeners.length > 0 || s.defaultListener !== undefined || before.length > 0)) {
    const d = s.sectionDefaults
    d.source = s.defaultListener !== undefined ? 'default listener (port/bind_address)' : 'default listener'
    if (s.defaultListener === undefined && cfg.listeners.length > 0) {
      const names = [...new Set(before.map(e => e.key))].join(', ')
      p.warn(before[0], `${names} before the first listener line: as mosquitto does, Midge opens the default listener on port ${d.port}${d.bindAddress ? ` (${d.bindAddress})` : ' on every interface'} with these settings. Move them below the listener they are meant for if that is not what you want.`)
    }
    cfg.listeners.unshift(d)
    return
  }
  // listeners exist and nothing opened the default one: what was set before the first listener applies to nothing
  if (cfg.listeners.length > 0) {
    for (const e of before) p.warn(e, `${e.key} before the first listener line applies to no listener (mosquitto ignores it too); move it below the listener it is meant for.`)
  }
}

/** Normalises protocol + TLS to a transport, resolves auth per listener, names listeners. */
function finishListeners (cfg: Config, p: ConfProblems): void {
  const ids = new Map<string, number>()
  for (const l of cfg.listeners) {
    const psk = l.tls?.pskHint !== undefined
    const secure = l.tls !== undefined && (l.tls.certfile !== '' || l.tls.keyfile !== '' || psk)
    const certs = l.tls !== undefined && (l.tls.certfile !== '' || l.tls.keyfile !== '')
    if (l.tls && !secure && (l.tls.cafile || l.tls.capath || l.tls.requireCertificate || l.tls.crlfile || l.tls.dhparamfile || l.tls.ciphers || l.tls.ciphersTls13 || l.tls.tlsVersion)) {
      p.error(undefined, `Listener at ${l.source}: TLS options (cafile, capath, require_certificate, crlfile, ciphers, ...) given without certfile and keyfile.`)
    }
    if (certs && (l.tls!.certfile === '' || l.tls!.keyfile === '')) {
      p.error(undefined, `Listener at ${l.source}: both certfile and keyfile must be provided.`)
    }
    if (certs && l.tls!.requireCertificate && !l.tls!.cafile && !l.tls!.capath) {
      p.error(undefined, `Listener at ${l.source}: require_certificate needs cafile or capath.`)
    }
    if (secure && l.tls!.crlfile && !l.tls!.requireCertificate) {
      p.warn(undefined, `Listener at ${l.source}: crlfile only matters with require_certificate true (client certificates are checked against it).`)
    }
    if (!secure) delete l.tls
    const csrCfg = l.http?.csr
    if (csrCfg && !csrCfg.enabled) delete l.http!.csr
    else if (csrCfg) {
      // the CSR page needs an HTTP-serving listener and the CA that signs
      if (l.protocol === 'mqtt') p.error(undefined, `http_csr_signing needs a websockets or http listener (${csrCfg.source}).`)
      if (!csrCfg.cafile || !csrCfg.keyfile) p.error(undefined, `http_csr_signing needs http_csr_cafile and http_csr_keyfile (${csrCfg.source}).`)
    }
    if (l.httpDir !== undefined && l.protocol !== 'websockets' && l.protocol !== 'http') {
      p.warn(undefined, `Listener at ${l.source}: http_dir is only served on websockets listeners (as in mosquitto) and Midge's http listeners; ignored on this ${l.protocol} listener.`)
      delete l.httpDir
    }
    if (l.protocol === 'websockets' && cfg.websocketsHeadersSize !== undefined) l.maxHeaderSize = cfg.websocketsHeadersSize
    if (l.unixSocketPath !== undefined && l.proxyProtocol !== undefined) {
      p.error(undefined, `Listener at ${l.source}: enable_proxy_protocol needs a TCP listener, not a Unix socket.`)
    }
    l.transport = l.protocol === 'websockets' ? (secure ? 'wss' : 'ws') : l.protocol === 'http' ? (secure ? 'https' : 'http') : (secure ? 'tls' : 'tcp')
    if (psk && l.transport !== 'tls') p.error(undefined, `Listener at ${l.source}: psk_hint needs an MQTT listener (TLS-PSK over WebSocket is not supported).`)
    if (!cfg.perListenerSettings) l.auth = structuredClone(cfg.auth)
    if (psk && l.auth.pskFile === undefined && !l.auth.plugins.length) {
      p.error(undefined, `Listener at ${l.source}: psk_hint given but no psk_file${cfg.perListenerSettings ? ' for this listener' : ''}: no client could connect.`)
    }
    const base = l.unixSocketPath !== undefined ? `${l.transport}:${l.unixSocketPath}` : `${l.transport}:${l.port}`
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
