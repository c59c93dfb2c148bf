import type { Server } from 'node:net'
import type { AddressInfo } from 'node:net'
import { BrokerError } from '../errors.js'
import type { ListenerConfig } from '../config/schema.js'

/** Host to bind: the listener's address, or every interface of the chosen family. */
export function bindHost (cfg: ListenerConfig): string | undefined {
  if (cfg.bindAddress) return cfg.bindAddress
  if (cfg.socketDomain === 'ipv4') return '0.0.0.0'
  if (cfg.socketDomain === 'ipv6') return '::'
  return undefined // node: '::' with dual stack, or 0.0.0.0 without IPv6
}

export function describeListener (cfg: ListenerConfig): string {
  return `${cfg.transport} listener on ${cfg.bindAddress ?? '*'}:${cfg.port}`
}

/** server.listen() as a promise that rejects with one readable line (port in use, bad address, ...). */
export function listenServer (server: Server, cfg: ListenerConfig): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
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
      resolve(server.address() as AddressInfo)
    }
    server.once('error', onError)
    server.once('listening', onListening)
    server.listen({ port: cfg.port, host: bindHost(cfg), ipv6Only: cfg.socketDomain === 'ipv6' })
  })
}

export function closeServer (server: Server): Promise<void> {
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
