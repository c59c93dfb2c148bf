import tls from 'node:tls'
import type { ListenerFactory } from './types.js'
import { closeServer, gateConnections, listenServer } from './bind.js'
import { secureContextOptions, tlsPeerOf } from './tls-options.js'
import { pskCallback, readPskFile, type PskTable } from './psk.js'

/** MQTT over TLS: a listener with certfile/keyfile (mosquitto's option names). */
export const tlsListener: ListenerFactory = (cfg, deps) => {
  // TLS-PSK (psk_hint): the psk_file of the listener's auth scope, reread on SIGHUP with the certificates
  const pskFile = cfg.tls?.pskHint !== undefined ? cfg.auth.pskFile : undefined
  let psk: PskTable | undefined = pskFile !== undefined ? readPskFile(pskFile) : undefined
  const options = (): tls.TlsOptions => ({ ...secureContextOptions(cfg, deps.log), ...(cfg.tls?.pskHint !== undefined ? { pskCallback: pskCallback(() => psk) } : {}) })
  const server = tls.createServer(options(), socket => {
    socket.setNoDelay(true)
    deps.onConnection(socket, {
      listener: cfg,
      remoteAddress: socket.remoteAddress,
      remotePort: socket.remotePort,
      tlsPeer: tlsPeerOf(socket)
    })
  })
  gateConnections(server, cfg, deps.admit)
  server.on('tlsClientError', (err, socket) => {
    deps.log.info({ listener: cfg.id, remoteAddress: socket.remoteAddress, err: err.message }, 'TLS handshake failed')
  })
  return {
    config: cfg,
    listen: () => listenServer(server, cfg, deps.log),
    close: () => closeServer(server),
    reloadTls: () => {
      const next = pskFile !== undefined ? readPskFile(pskFile) : undefined
      server.setSecureContext(secureContextOptions(cfg, deps.log))
      psk = next
    }
  }
}
