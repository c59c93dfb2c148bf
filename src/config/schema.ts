/**
 * The typed configuration every other module reads. The only place defaults live is `defaultConfig()` and
 * `defaultListener()`; the mosquitto.conf parser and the CLI layer only ever override them.
 */
import type { BridgeConfig } from './bridge.js'

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
  /** `ciphers_tls1.3`: TLS 1.3 suites, colon-separated (OpenSSL names). */
  ciphersTls13?: string
  /** `crlfile`: PEM certificate revocation list(s) checked against client certificates; reread on SIGHUP. */
  crlfile?: string
  /** `dhparamfile`: PEM Diffie-Hellman parameters for DHE suites. */
  dhparamfile?: string
  /** `psk_hint`: turns on TLS-PSK on this listener; identities and keys come from the auth scope's `psk_file`. */
  pskHint?: string
}

export interface AuthPluginConfig {
  path: string
  options: Record<string, string>
  /** `auth_plugin_deny_special_chars` (default true): a username or client id with `+` or `#` is refused before the plug-in is asked. */
  denySpecialChars?: boolean
  /** The option that named it (`auth_plugin` or `plugin`), for messages. */
  option?: string
}

/** Authentication and authorisation settings: global, or per listener when `per_listener_settings true`. */
export interface AuthConfig {
  allowAnonymous: boolean
  passwordFile?: string
  aclFile?: string
  plugins: AuthPluginConfig[]
  /** `psk_file`: `identity:hexkey` per line, for listeners with `psk_hint`. */
  pskFile?: string
  /** `allow_zero_length_clientid` (default true): an empty client id gets a generated one; false refuses it (CONNACK 2). */
  allowZeroLengthClientid: boolean
  /** `auto_id_prefix` (default `auto-`): prefix of generated client ids. */
  autoIdPrefix: string
}

export interface ListenerConfig {
  /** Stable name for logs and metrics: `<transport>:<port>` (suffixed on collision). */
  id: string
  port: number
  bindAddress?: string
  /** `listener 0 /path/to/socket`: a Unix domain socket instead of TCP (mosquitto's syntax). */
  unixSocketPath?: string
  /** `bind_interface IFACE`: the listener binds to that interface's address (Node cannot SO_BINDTODEVICE). */
  bindInterface?: string
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
  /** `max_qos` (0..2): the highest QoS this listener grants (MQTT 5 Maximum QoS). */
  maxQos: 0 | 1 | 2
  /** `max_topic_alias` (0..65535): topic aliases a v5 client may use on this listener. */
  maxTopicAlias: number
  /** `accept_protocol_versions` (mosquitto 2.1): MQTT protocol levels accepted (3 = 3.1, 4 = 3.1.1, 5 = 5.0). */
  acceptProtocolVersions: Array<3 | 4 | 5>
  /** `use_username_as_clientid`: a client's username replaces its client id (no username: CONNACK 5). */
  useUsernameAsClientid: boolean
  /** `mount_point`: prefix added to every topic of this listener's clients, and removed from what they receive. */
  mountPoint?: string
  /** `http_dir`: static files served to plain HTTP requests on a websockets listener. */
  httpDir?: string
  /** From the global `websockets_headers_size`, on websockets listeners: the largest HTTP request head, bytes. */
  maxHeaderSize?: number
  /** `enable_proxy_protocol 1|2` (mosquitto 2.1): every connection starts with a PROXY header of that version. */
  proxyProtocol?: 1 | 2
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
  /** `max_packet_size`: largest MQTT packet accepted, in bytes; 0 = no limit (mosquitto refuses 0..19). */
  maxPacketSize: number
  /** `queue_qos0_messages`: keep messages delivered at QoS 0 for offline persistent sessions (broker/qos0-queue.ts). */
  queueQos0Messages: boolean
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
  /** `clientid_prefixes`: only client ids starting with this prefix may connect (CONNACK 5 otherwise). */
  clientidPrefixes?: string
  /** `websockets_headers_size` (global): largest HTTP header block accepted on websockets listeners, bytes; unset = Node's default. */
  websocketsHeadersSize?: number
  /** `connection` blocks: bridges to other brokers (src/bridge/). */
  bridges: BridgeConfig[]
}

export const MQTT_DEFAULT_PORT = 1883

export function defaultAuth (): AuthConfig {
  return { allowAnonymous: false, plugins: [], allowZeroLengthClientid: true, autoIdPrefix: 'auto-' }
}

export function defaultListener (port: number, source: string): ListenerConfig {
  return {
    id: '',
    port,
    protocol: 'mqtt',
    transport: 'tcp',
    maxConnections: -1,
    auth: defaultAuth(),
    source,
    maxQos: 2,
    maxTopicAlias: 10,
    acceptProtocolVersions: [3, 4, 5],
    useUsernameAsClientid: false
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
      maxSubscriptionsPerClient: 1000,
      maxPacketSize: 0,
      queueQos0Messages: false
    },
    sysInterval: 10,
    log: { dest: [{ kind: 'stderr' }], types: ['error', 'warning', 'notice', 'information'], connectionMessages: true, timestamp: true },
    localOnly: false,
    admin: {},
    bridges: [],
    warnings: []
  }
}
