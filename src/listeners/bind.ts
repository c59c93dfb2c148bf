import net, { type Server, type AddressInfo } from 'node:net'
import http from 'node:http'
import { lstatSync, rmSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { BrokerError } from '../errors.js'
import type { ListenerConfig } from '../config/schema.js'
import type { Logger } from '../logging/logger.js'
import { readProxyHeader, adoptProxiedPeer } from './proxy-protocol.js'

/**
 * enable_proxy_protocol: a plain TCP server listens in front of the listener's own (TLS, HTTP or TCP) server and
 * hands it each connection once its PROXY header is read (proxy-protocol.ts).
 */
const fronts = new WeakMap<Server, Server>()

function proxyFront (server: Server, cfg: ListenerConfig, log?: Logger): Server {
  const front = net.createServer({ noDelay: true })
  front.on('connection', socket => {
    readProxyHeader(socket, cfg.proxyProtocol!, s => {
      server.emit('connection', s)
      // Node's HTTP server reads a socket's handle directly, past the stream: the bytes the header reader already
      // took and put back (the start of the request) would wait in the paused stream for ever, and HAProxy's health
      // checks (GET /healthz right behind the header) never got an answer. Flowing, they reach the server's 'data'
      // listener. The MQTT and TLS servers read the stream themselves.
      if (server instanceof http.Server) s.resume()
    }, (s, reason) => {
      log?.warn({ listener: cfg.id, remoteAddress: s.remoteAddress }, `Connection refused: ${reason} (enable_proxy_protocol ${cfg.proxyProtocol!}).`)
      s.destroy()
    })
  })
  // a TLS socket built on a proxied socket reports the client's address too
  server.prependListener('secureConnection', adoptProxiedPeer)
  fronts.set(server, front)
  return front
}

/**
 * `bind_interface`: Node cannot bind to a device (SO_BINDTODEVICE), so the listener binds to the address the
 * interface has now: IPv4 unless `socket_domain ipv6`. mosquitto gives bind_interface priority over an address.
 */
export function interfaceAddress (cfg: ListenerConfig): string {
  const name = cfg.bindInterface!
  const addrs = networkInterfaces()[name]
  if (addrs === undefined) throw new BrokerError('LISTEN', `Error: could not open ${describeListener(cfg)} (${cfg.source}): bind_interface ${name}: no such network interface.`)
  const want = cfg.socketDomain === 'ipv6' ? 'IPv6' : 'IPv4'
  const a = addrs.find(x => x.family === want) ?? (cfg.socketDomain === undefined ? addrs[0] : undefined)
  if (a === undefined) throw new BrokerError('LISTEN', `Error: could not open ${describeListener(cfg)} (${cfg.source}): bind_interface ${name} has no ${want} address.`)
  return a.address
}

/** Host to bind: the listener's address, or every interface of the chosen family. */
export function bindHost (cfg: ListenerConfig): string | undefined {
  if (cfg.bindInterface) return interfaceAddress(cfg)
  if (cfg.bindAddress) return cfg.bindAddress
  if (cfg.socketDomain === 'ipv4') return '0.0.0.0'
  if (cfg.socketDomain === 'ipv6') return '::'
  return undefined // node: '::' with dual stack, or 0.0.0.0 without IPv6
}

export function describeListener (cfg: ListenerConfig): string {
  if (cfg.unixSocketPath !== undefined) return `${cfg.transport} listener on unix socket ${cfg.unixSocketPath}`
  return `${cfg.transport} listener on ${cfg.bindInterface ?? cfg.bindAddress ?? '*'}:${cfg.port}`
}

/**
 * A socket file left by a broker that did not stop cleanly is removed, as mosquitto does; one that still answers
 * (another broker runs on it) or a path that is not a socket is left alone, and listen fails with EADDRINUSE.
 */
async function removeStaleSocket (path: string): Promise<void> {
  let isSocket: boolean
  try { isSocket = lstatSync(path).isSocket() } catch { return }
  if (!isSocket) return
  const alive = await new Promise<boolean>(resolve => {
    const probe = net.connect(path)
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => resolve(false))
  })
  if (!alive) rmSync(path, { force: true })
}

/** server.listen() as a promise that rejects with one readable line (port in use, bad address, ...). */
export async function listenServer (real: Server, cfg: ListenerConfig, log?: Logger): Promise<AddressInfo> {
  const server = cfg.proxyProtocol !== undefined ? proxyFront(real, cfg, log) : real
  if (cfg.unixSocketPath !== undefined) await removeStaleSocket(cfg.unixSocketPath)
  const host = cfg.unixSocketPath === undefined ? bindHost(cfg) : undefined
  return await new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening)
      const what = describeListener(cfg)
      const reason = err.code === 'EADDRINUSE'
        ? 'Address already in use'
        : err.code === 'EACCES'
          ? 'Permission denied (ports below 1024 need privileges)'
          : err.code === 'EADDRNOTAVAIL'
            ? 'Cannot assign requested address'
            : err.message
      reject(new BrokerError('LISTEN', `Error: could not open ${what} (${cfg.source}): ${reason}.`, { cause: err }))
    }
    const onListening = (): void => {
      server.off('error', onError)
      const a = server.address()
      // a Unix socket: its path stands in the address, port 0
      resolve(typeof a === 'string' ? { address: a, family: 'unix', port: 0 } : a as AddressInfo)
    }
    server.once('error', onError)
    server.once('listening', onListening)
    if (cfg.unixSocketPath !== undefined) server.listen({ path: cfg.unixSocketPath })
    else server.listen({ port: cfg.port, host, ipv6Only: cfg.socketDomain === 'ipv6' })
  })
}

export function closeServer (real: Server): Promise<void> {
  const server = fronts.get(real) ?? real
  return new Promise(resolve => {
    if (!server.listening) { resolve(); return }
    server.close(() => resolve())
  })
}

/** Destroys accepted sockets that the broker does not admit, before any TLS or HTTP work is done on them. */
export function gateConnections (server: Server, cfg: ListenerConfig, admit: ((remoteAddress: string | undefined, l: ListenerConfig) => boolean) | undefined): void {
  if (!admit) return
  // prepended: runs before node's own TLS/HTTP connection handling, so a refused socket costs no handshake
  server.prependListener('connection', (socket: import('node:net').Socket) => {
    if (!admit(socket.remoteAddress, cfg)) socket.destroy()
  })
}
