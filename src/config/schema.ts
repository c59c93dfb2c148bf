/**
 * The typed configuration every other module reads. The only place defaults live is `defaultConfig()` and
 * `defaultListener()`; the mosquitto.conf parser and the CLI layer only ever override them.
 */
import type { BridgeConfig } from '../bridge/config.js'

/** `http` is a Midge extension: an HTTP-only listener (metrics, health, CSR page, admin API). */
export type Protocol = 'mqtt' | 'websockets' | 'http'
/** As in mosquitto, TLS is a listener with `certfile`, not a protocol: protocol + TLS normalise to a transport. */
export type Transport = 'tcp' | 'tls' | 'ws' | 'wss' | 'http' | 'https'

export type LogType = 'error' | 'warning' | 'notice' | 'information' | 'debug' | 'subscribe' | 'unsubscribe' | 'websockets'
export const LOG_TYPES: readonly LogType[] = ['error', 'warning', 'notice', 'information', 'debug', 'subscribe', 'unsubscribe', 'websockets']

export type LogDest = { kind: 'stderr' } | { kind: 'stdout' } | { kind: 'file', path: string } | { kind: 'none' }

export interface TlsConfig {
  cafile?: string
  capath?: string
  certfile: string
  keyfile: string
  requireCertificate: boolean
  useIdentityAsUsername: boolean
  useSubjectAsUsername: boolean
  /** mosquitto spelling: tlsv1.1 | tlsv1.2 | tlsv1.3 (the minimum accepted) */
  tlsVersion?: string
  ciphers?: string
  /** Midge extension: an expired or not-yet-valid certfile is a start-up warning instead of an error (test ports). */
  allowExpiredCertificate?: boolean
}

export interface AuthPluginConfig {
  path: string
  options: Record<string, string>
}

/** Authentication and authorisation settings: global, or per listener when `per_listener_settings true`. */
export interface AuthConfig {
  allowAnonymous: boolean
  passwordFile?: string
  aclFile?: string
  plugins: AuthPluginConfig[]
}

export interface ListenerConfig {
  /** Stable name for logs and metrics: `<transport>:<port>` (suffixed on collision). */
  id: string
  port: number
  bindAddress?: string
  protocol: Protocol
  transport: Transport
  socketDomain?: 'ipv4' | 'ipv6'
  /** -1 = unlimited */
  maxConnections: number
  tls?: TlsConfig
  /** The effective auth settings of this listener (a copy of the global ones unless per_listener_settings). */
  auth: AuthConfig
  /** Where the listener was declared, for error messages. */
  source: string
  /** Plain HTTP on this listener (websockets listeners): /metrics, /healthz, the CSR page. */
  http?: HttpListenerConfig
  /** Midge extension (`deny_bare_wildcard_subscription`): refuse SUBSCRIBE to the bare `#` filter. */
  denyBareWildcard?: 'anonymous' | 'all'
}

/** The CSR signing page (`http_csr_*` options): signs client certificates with this CA, as test.mosquitto.org does. */
export interface CsrSigningConfig {
  /** `http_csr_signing true`; the other http_csr_* options alone do nothing. */
  enabled: boolean
  cafile: string
  keyfile: string
  /** Validity of the certificates it signs, in days. */
  days: number
  /** Certificates signed per remote address per hour. */
  ratePerHour: number
  /** Where `http_csr_signing` was set, for error messages. */
  source: string
}

export function defaultCsrSigning (source: string): CsrSigningConfig {
  return { enabled: false, cafile: '', keyfile: '', days: 90, ratePerHour: 10, source }
}

export interface HttpListenerConfig {
  /** `http_metrics false` hides /metrics on this listener. */
  metrics?: boolean
  csr?: CsrSigningConfig
  /** `admin_enabled true`: the admin API and web console on this listener (src/admin/). */
  admin?: boolean
}

/** The admin API and console: global credentials; each listener opts in with `admin_enabled true`. */
export interface AdminConfig {
  /** `admin_password_file`: mosquitto_passwd format; the console login and HTTP Basic. Never the MQTT password_file. */
  passwordFile?: string
  /** `admin_token_file`: API tokens, `NAME:read|write:SHA256HEX` per line (only hashes are stored). */
  tokenFile?: string
  /** Where the first `admin_*` option was set, for error messages. */
  source?: string
}

export interface PersistenceConfig {
  enabled: boolean
  location: string
  file: string
  /** fsync every write that precedes an acknowledgement (power-loss safety; costs throughput). */
  sync: boolean
  /** 0 = never expire persistent sessions */
  clientExpirationMs: number
}

/** Several nodes on one Redis (`cluster_redis`): routing (mqemitter-redis) and the store (aedes-persistence-redis). */
export interface ClusterConfig {
  /** `redis://[user[:password]@]host[:port][/db]` or `rediss://...` (TLS). */
  redisUrl: string
  /** `cluster_redis_password`: overrides a password in the URL (keeps it out of the URL). */
  redisPassword?: string
  /** `cluster_redis_tls true` or a `rediss://` URL. */
  redisTls: boolean
  /** `cluster_redis_cafile`: CA bundle that signed the Redis server certificate (default: the system CAs). */
  redisCafile?: string
  /** `node_id`: this node's name in logs, $SYS and aedes' broker id; default: the host name. */
  nodeId: string
  /** Where `cluster_redis` was set, for error messages. */
  source: string
}

export interface LimitsConfig {
  /** 0 = no limit */
  maxKeepalive: number
  /** Largest PUBLISH payload accepted; 0 = no limit beyond the MQTT maximum. */
  messageSizeLimit: number
  maxInflightMessages: number
  maxQueuedMessages: number
  /** 0 = no limit */
  maxQueuedBytes: number
  retainAvailable: boolean
  /** Close a connection that has not sent CONNECT within this many milliseconds. */
  connectTimeoutMs: number
  /** New connections accepted per second from one source address; 0 = no limit. */
  maxConnectionRate: number
  /** Longest topic or topic filter, in bytes; 0 = the MQTT maximum (65535). */
  maxTopicLength: number
  /** Distinct topic filters one client may hold; 0 = no limit. */
  maxSubscriptionsPerClient: number
}

export interface LogConfig {
  dest: LogDest[]
  types: LogType[]
  connectionMessages: boolean
  timestamp: boolean
}

export interface Config {
  /** Absolute path of the main config file, if any. */
  configFile?: string
  listeners: ListenerConfig[]
  perListenerSettings: boolean
  /** Global auth settings (used by every listener unless per_listener_settings). */
  auth: AuthConfig
  persistence: PersistenceConfig
  /** Set when `cluster_redis` is: this node shares routing and the store with other nodes through Redis. */
  cluster?: ClusterConfig
  limits: LimitsConfig
  /** $SYS publish period in seconds; 0 = off. */
  sysInterval: number
  log: LogConfig
  pidFile?: string
  /** True when no listener was configured: mosquitto 2's "local only mode". */
  localOnly: boolean
  /** Warnings found while loading (ignored options and the like), logged once the logger exists. */
  warnings: string[]
  /** Admin API and console credentials. */
  admin: AdminConfig
  /** `connection` blocks: bridges to other brokers (src/bridge/). */
  bridges: BridgeConfig[]
}

export const MQTT_DEFAULT_PORT = 1883

export function defaultAuth (): AuthConfig {
  return { allowAnonymous: false, plugins: [] }
}

export function defaultListener (port: number, source: string): ListenerConfig {
  return {
    id: '',
    port,
    protocol: 'mqtt',
    transport: 'tcp',
    maxConnections: -1,
    auth: defaultAuth(),
    source
  }
}

export function defaultConfig (): Config {
  return {
    listeners: [],
    perListenerSettings: false,
    auth: defaultAuth(),
    persistence: { enabled: false, location: '.', file: 'midge.db', sync: false, clientExpirationMs: 0 },
    limits: {
      maxKeepalive: 65535,
      messageSizeLimit: 0,
      maxInflightMessages: 20,
      maxQueuedMessages: 1000,
      maxQueuedBytes: 0,
      retainAvailable: true,
      connectTimeoutMs: 10_000,
      maxConnectionRate: 0,
      maxTopicLength: 4096,
      maxSubscriptionsPerClient: 1000
    },
    sysInterval: 10,
    log: { dest: [{ kind: 'stderr' }], types: ['error', 'warning', 'notice', 'information'], connectionMessages: true, timestamp: true },
    localOnly: false,
    admin: {},
    bridges: [],
    warnings: []
  }
}
