/**
 * mosquitto 2.0's bridge options: a `connection NAME` line opens a bridge and every bridge option after it belongs
 * to that bridge, until the next `connection`. Wording of the errors follows mosquitto 2.0.11 where it has one.
 * mosquitto.conf's option table dispatches the keys of BRIDGE_OPTIONS here; finishBridges checks each bridge once
 * the whole file is read.
 */
import { hostname } from 'node:os'
import { resolve } from 'node:path'
import type { Config } from './schema.js'
import type { ConfEntry, ConfProblems } from './mosquitto-conf.js'
import { one, bool, int } from './values.js'

export type BridgeDirection = 'in' | 'out' | 'both'

export interface BridgeTopic {
  /** The pattern as written; '' when the prefixes alone name the topic. */
  pattern: string
  direction: BridgeDirection
  qos: 0 | 1 | 2
  localPrefix: string
  remotePrefix: string
}

export interface BridgeAddress {
  host: string
  port: number
  /** Midge extension: `address ws://host:port/path` (or wss://) reaches the remote over WebSocket. */
  websocket?: { secure: boolean, path: string }
}

export interface BridgeTls {
  cafile?: string
  capath?: string
  certfile?: string
  keyfile?: string
  /** No check of the remote's host name against its certificate. */
  insecure: boolean
  /** mosquitto spelling: tlsv1.1 | tlsv1.2 | tlsv1.3 */
  version: string
  alpn?: string
}

export type RestartTimeout = { kind: 'constant', seconds: number } | { kind: 'backoff', base: number, cap: number }

export interface BridgeConfig {
  name: string
  /** file:line of the `connection` line. */
  source: string
  addresses: BridgeAddress[]
  roundRobin: boolean
  topics: BridgeTopic[]
  protocolVersion: 3 | 4 | 5
  cleanSession: boolean
  localCleanSession: boolean
  remoteClientId: string
  localClientId: string
  remoteUsername?: string
  remotePassword?: string
  localUsername?: string
  localPassword?: string
  notifications: boolean
  notificationTopic: string
  notificationsLocalOnly: boolean
  tryPrivate: boolean
  startType: 'automatic' | 'lazy' | 'once'
  restartTimeout: RestartTimeout
  idleTimeoutSeconds: number
  threshold: number
  keepaliveSeconds: number
  attemptUnsubscribe: boolean
  outgoingRetain: boolean
  /** 0 = no limit */
  maxPacketSize: number
  bindAddress?: string
  tls?: BridgeTls
  /** Midge extension: QoS 1/2 messages held for the remote at most; further ones are dropped and counted. */
  maxQueuedMessages: number
}

/** Held per bridge when `bridge_max_queued_messages` is not given: an outage of hours at a few messages a second. */
export const DEFAULT_BRIDGE_QUEUE = 100_000

/** Options whose value is only kept until finishBridges: defaults that depend on other options. */
interface Pending {
  localCleanSession?: boolean
  remoteClientId?: string
  localClientId?: string
  notificationTopic?: string
  /** A line of the block was refused: the checks of the whole block would only repeat that error. */
  broken?: boolean
}

const pending = new WeakMap<BridgeConfig, Pending>()

function defaultBridge (name: string, source: string): BridgeConfig {
  return {
    name,
    source,
    addresses: [],
    roundRobin: false,
    topics: [],
    protocolVersion: 4,
    cleanSession: false,
    localCleanSession: false,
    remoteClientId: '',
    localClientId: '',
    notifications: true,
    notificationTopic: '',
    notificationsLocalOnly: false,
    tryPrivate: true,
    startType: 'automatic',
    restartTimeout: { kind: 'backoff', base: 5, cap: 30 },
    idleTimeoutSeconds: 60,
    threshold: 10,
    keepaliveSeconds: 60,
    attemptUnsubscribe: true,
    outgoingRetain: true,
    maxPacketSize: 0,
    maxQueuedMessages: DEFAULT_BRIDGE_QUEUE
  }
}

// ------------------------------------------------------------------------------------ value parsers

function unquote (v: string): string {
  return v === '""' ? '' : v
}

function hasWildcard (s: string): boolean {
  return s.includes('+') || s.includes('#')
}

/** A topic filter as MQTT allows it: `#` only as the whole last level, `+` only as a whole level. */
function validFilter (f: string): boolean {
  const levels = f.split('/')
  return levels.every((l, i) => (l === '#' ? i === levels.length - 1 : l === '+' || !hasWildcard(l)))
}

export function parseAddress (v: string): BridgeAddress | string {
  if (/^wss?:\/\//.test(v)) {
    let u: URL
    try { u = new URL(v) } catch { return `not a URL (${v})` }
    const secure = u.protocol === 'wss:'
    const port = u.port === '' ? (secure ? 443 : 80) : Number(u.port)
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port, websocket: { secure, path: `${u.pathname}${u.search}` } }
  }
  // host, host:port, or an IPv6 address with a port (mosquitto: the port is not optional for IPv6)
  const m = /^(.*):(\d+)$/.exec(v)
  const host = m ? m[1]! : v
  const port = m ? Number(m[2]) : 1883
  if (host === '' || port < 1 || port > 65535) return `invalid address (${v})`
  if (!m && host.includes(':')) return `an IPv6 address needs a port (${v})`
  return { host: host.replace(/^\[|\]$/g, ''), port }
}

// ----------------------------------------------------------------------------------- option table

type Apply = (e: ConfEntry, b: BridgeConfig, p: ConfProblems, cfg: Config) => void

function tls (b: BridgeConfig): BridgeTls {
  b.tls ??= { insecure: false, version: 'tlsv1.2' }
  return b.tls
}

function pend (b: BridgeConfig): Pending {
  let v = pending.get(b)
  if (!v) { v = {}; pending.set(b, v) }
  return v
}

const address: Apply = (e, b, p) => {
  if (e.args.length === 0) { p.error(e, `Empty ${e.key} value in configuration.`); return }
  for (const a of e.args) {
    const r = parseAddress(a)
    if (typeof r === 'string') p.error(e, `Invalid bridge ${e.key}: ${r}.`)
    else b.addresses.push(r)
  }
}

const remoteClientId: Apply = (e, b, p) => { const v = one(e, p); if (v) pend(b).remoteClientId = v }
const remoteUsername: Apply = (e, b, p) => { const v = one(e, p); if (v) b.remoteUsername = v }
const remotePassword: Apply = (e, b, p) => { const v = one(e, p); if (v) b.remotePassword = v }

const topic: Apply = (e, b, p) => {
  const [rawPattern, dir, qosText, lp, rp, ...extra] = e.args
  if (rawPattern === undefined) { p.error(e, 'Empty topic value in configuration.'); return }
  if (extra.length > 0) p.warn(e, `Extra arguments after topic value ignored: ${extra.join(' ')}`)
  const direction = dir ?? 'out'
  if (direction !== 'in' && direction !== 'out' && direction !== 'both') { p.error(e, `Invalid bridge topic direction '${direction}'.`); return }
  const qos = qosText === undefined ? 0 : /^[0-2]$/.test(qosText) ? Number(qosText) as 0 | 1 | 2 : undefined
  if (qos === undefined) { p.error(e, `Invalid bridge QoS level '${qosText ?? ''}'.`); return }
  if (lp !== undefined && rp === undefined) { p.error(e, 'Invalid bridge remapping: a local prefix needs a remote prefix.'); return }
  const pattern = unquote(rawPattern)
  const localPrefix = unquote(lp ?? '')
  const remotePrefix = unquote(rp ?? '')
  // mosquitto's table: an empty pattern remaps one topic and needs both prefixes
  if (pattern === '' && (localPrefix === '' || remotePrefix === '')) { p.error(e, 'Invalid bridge remapping.'); return }
  if (hasWildcard(localPrefix) || hasWildcard(remotePrefix)) { p.error(e, 'Invalid bridge topic local prefix or remote prefix: wildcards are not allowed.'); return }
  if (!validFilter(localPrefix + pattern) || !validFilter(remotePrefix + pattern)) { p.error(e, `Invalid bridge topic pattern '${rawPattern}'.`); return }
  b.topics.push({ pattern, direction, qos, localPrefix, remotePrefix })
}

const RESTART_MAX = 86_400

export const BRIDGE_OPTIONS: Record<string, Apply> = {
  address,
  addresses: address,
  round_robin (e, b, p) { const v = bool(e, p); if (v !== undefined) b.roundRobin = v },
  topic,
  bridge_protocol_version (e, b, p) {
    const v = one(e, p)
    if (v === undefined) return
    const n = ({ mqttv31: 3, mqttv311: 4, mqttv50: 5 } as const)[v as 'mqttv31']
    if (n === undefined) p.error(e, `Invalid bridge_protocol_version value (${v}).`)
    else b.protocolVersion = n
  },
  cleansession (e, b, p) { const v = bool(e, p); if (v !== undefined) b.cleanSession = v },
  local_cleansession (e, b, p) { const v = bool(e, p); if (v !== undefined) pend(b).localCleanSession = v },
  remote_clientid: remoteClientId,
  clientid: remoteClientId,
  local_clientid (e, b, p) { const v = one(e, p); if (v) pend(b).localClientId = v },
  remote_username: remoteUsername,
  username: remoteUsername,
  remote_password: remotePassword,
  password: remotePassword,
  local_username (e, b, p) { const v = one(e, p); if (v) b.localUsername = v },
  local_password (e, b, p) { const v = one(e, p); if (v) b.localPassword = v },
  notifications (e, b, p) { const v = bool(e, p); if (v !== undefined) b.notifications = v },
  notification_topic (e, b, p) {
    const v = one(e, p)
    if (v === undefined) return
    if (hasWildcard(v)) { p.error(e, `Invalid notification_topic value (${v}): wildcards are not allowed.`); return }
    pend(b).notificationTopic = v
  },
  notifications_local_only (e, b, p) { const v = bool(e, p); if (v !== undefined) b.notificationsLocalOnly = v },
  try_private (e, b, p) { const v = bool(e, p); if (v !== undefined) b.tryPrivate = v },
  start_type (e, b, p) {
    const v = one(e, p)
    if (v === 'automatic' || v === 'lazy' || v === 'once') b.startType = v
    else if (v === 'manual') p.error(e, 'Manual start_type not supported.')
    else if (v !== undefined) p.error(e, `Invalid start_type value (${v}).`)
  },
  restart_timeout (e, b, p) {
    const [a, c, ...extra] = e.args
    const num = (s: string | undefined): number | undefined => s !== undefined && /^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= RESTART_MAX ? Number(s) : undefined
    const base = num(a)
    if (base === undefined) { p.error(e, `Invalid restart_timeout value (${e.args.join(' ')}).`); return }
    if (extra.length > 0) p.warn(e, `Extra arguments after restart_timeout value ignored: ${extra.join(' ')}`)
    if (c === undefined) { b.restartTimeout = { kind: 'constant', seconds: base }; return }
    const cap = num(c)
    if (cap === undefined) { p.error(e, `Invalid restart_timeout value (${e.args.join(' ')}).`); return }
    if (cap < base) { p.error(e, 'backoff cap is lower than the base in restart_timeout.'); return }
    b.restartTimeout = { kind: 'backoff', base, cap }
  },
  idle_timeout (e, b, p) { const n = int(e, p, 1, RESTART_MAX); if (n !== undefined) b.idleTimeoutSeconds = n },
  threshold (e, b, p) { const n = int(e, p, 1, 1e9); if (n !== undefined) b.threshold = n },
  keepalive_interval (e, b, p) {
    const n = int(e, p, 0, 65535)
    if (n === undefined) return
    if (n < 5) p.warn(e, 'keepalive interval too low, using 5 seconds.')
    b.keepaliveSeconds = Math.max(5, n)
  },
  bridge_attempt_unsubscribe (e, b, p) { const v = bool(e, p); if (v !== undefined) b.attemptUnsubscribe = v },
  bridge_outgoing_retain (e, b, p) { const v = bool(e, p); if (v !== undefined) b.outgoingRetain = v },
  bridge_max_packet_size (e, b, p) { const n = int(e, p, 0, 268_435_460); if (n !== undefined) b.maxPacketSize = n },
  bridge_bind_address (e, b, p) { const v = one(e, p); if (v) b.bindAddress = v },
  bridge_cafile (e, b, p) { const v = one(e, p); if (v) tls(b).cafile = resolve(v) },
  bridge_capath (e, b, p) { const v = one(e, p); if (v) tls(b).capath = resolve(v) },
  bridge_certfile (e, b, p) { const v = one(e, p); if (v) tls(b).certfile = resolve(v) },
  bridge_keyfile (e, b, p) { const v = one(e, p); if (v) tls(b).keyfile = resolve(v) },
  bridge_insecure (e, b, p) { const v = bool(e, p); if (v !== undefined) tls(b).insecure = v },
  bridge_tls_version (e, b, p) {
    const v = one(e, p)
    if (v === undefined) return
    if (!['tlsv1.1', 'tlsv1.2', 'tlsv1.3'].includes(v)) { p.error(e, `Unsupported bridge_tls_version "${v}".`); return }
    tls(b).version = v
  },
  bridge_alpn (e, b, p) { const v = one(e, p); if (v) tls(b).alpn = v },
  // Node's TLS client offers PSK only through a callback per connection and no OCSP stapling check: refused
  // rather than ignored, so that nobody believes a bridge is protected the way the file says
  bridge_identity (e, _b, p) { p.error(e, 'bridge_identity (TLS-PSK) is not supported by Midge bridges: use bridge_cafile with certificates.') },
  bridge_psk (e, _b, p) { p.error(e, 'bridge_psk (TLS-PSK) is not supported by Midge bridges: use bridge_cafile with certificates.') },
  bridge_require_ocsp (e, _b, p) { p.error(e, 'bridge_require_ocsp is not supported by Midge bridges: Node.js does not check OCSP responses.') },
  // Midge extension: how many QoS 1/2 messages a bridge holds for its remote
  bridge_max_queued_messages (e, b, p) { const n = int(e, p, 1, 1e9); if (n !== undefined) b.maxQueuedMessages = n }
}

/** The bridge that bridge options apply to: the last `connection`. */
function current (cfg: Config): BridgeConfig | undefined {
  return cfg.bridges[cfg.bridges.length - 1]
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/

/** `connection NAME` and every bridge option, for the mosquitto.conf option table. */
export function applyBridgeOption (e: ConfEntry, cfg: Config, p: ConfProblems): void {
  const before = p.errors.length
  if (e.key === 'connection') {
    const name = one(e, p) ?? ''
    // the name becomes part of $SYS topics, metric labels and the store's directory name
    if (name !== '' && !NAME.test(name)) p.error(e, `Invalid connection name (${name}): use 1 to 64 letters, digits, '_', '.' or '-'.`)
    else if (cfg.bridges.some(b => b.name === name)) p.error(e, `Duplicate bridge name "${name}".`)
    // a refused block still collects its options, so that they are not reported as outside any block
    const b = defaultBridge(name, `${e.file}:${e.line}`)
    cfg.bridges.push(b)
    if (p.errors.length > before) pend(b).broken = true
    return
  }
  const b = current(cfg)
  if (b === undefined) { p.error(e, 'Invalid bridge configuration.'); return }
  BRIDGE_OPTIONS[e.key]!(e, b, p, cfg)
  if (p.errors.length > before) pend(b).broken = true
}

export const BRIDGE_KEYS: readonly string[] = ['connection', ...Object.keys(BRIDGE_OPTIONS)]

/** Checks that need the whole block, and the defaults that depend on other options. */
export function finishBridges (cfg: Config, p: ConfProblems): void {
  const clientIds = new Set<string>()
  for (const b of cfg.bridges) {
    const at = (msg: string): void => p.error(undefined, `${msg} (connection ${b.name} at ${b.source})`)
    const pd = pending.get(b) ?? {}
    pending.delete(b)
    if (pd.broken === true) continue
    if (b.addresses.length === 0) at('Invalid bridge configuration: no remote addresses defined.')
    if (b.topics.length === 0) at('Invalid bridge configuration: no topics defined.')
    if (b.remotePassword !== undefined && b.remoteUsername === undefined) at('remote_password is only valid with remote_username.')
    if (b.localPassword !== undefined && b.localUsername === undefined) at('local_password is only valid with local_username.')
    b.remoteClientId = pd.remoteClientId ?? `${b.name}.${hostname()}`.slice(0, 128)
    b.localClientId = pd.localClientId ?? `local.${b.remoteClientId}`
    b.localCleanSession = pd.localCleanSession ?? b.cleanSession
    b.notificationTopic = pd.notificationTopic ?? `$SYS/broker/connection/${b.remoteClientId}/state`
    if (b.localClientId === b.remoteClientId) at('local_clientid and remote_clientid must differ: a broker bridged to itself would take over its own session.')
    if (clientIds.has(b.remoteClientId)) at(`remote_clientid ${b.remoteClientId} is used by two bridges.`)
    clientIds.add(b.remoteClientId)
    const t = b.tls
    if (t) {
      if ((t.certfile === undefined) !== (t.keyfile === undefined)) at('bridge_certfile and bridge_keyfile must be given together.')
      if (!t.cafile && !t.capath && (t.certfile || t.insecure || t.alpn)) at('bridge TLS options need bridge_cafile or bridge_capath.')
    }
    const ws = b.addresses.filter(a => a.websocket)
    if (ws.some(a => a.websocket!.secure) && !t?.cafile && !t?.capath) at('a wss:// address needs bridge_cafile or bridge_capath.')
    if (t && ws.some(a => !a.websocket!.secure)) at('bridge_cafile with a ws:// address: use wss:// for TLS.')
    if (b.protocolVersion === 3 && b.remoteClientId.length > 23) at(`remote_clientid ${b.remoteClientId} is longer than the 23 characters MQTT 3.1 allows.`)
  }
}
