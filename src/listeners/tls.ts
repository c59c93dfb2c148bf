import tls from 'node:tls'
import type { ListenerFactory } from './types.js'
import { closeServer, gateConnections, listenServer } from './bind.js'
import { secureContextOptions, tlsPeerOf } from './tls-options.js'

/** MQTT over TLS: a listener with certfile/keyfile (mosquitto's option names). */
export const tlsListener: ListenerFactory = (cfg, deps) => {
  const server = tls.createServer(secureContextOptions(cfg, deps.log), socket => {
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
    listen: () => listenServer(server, cfg),
    close: () => closeServer(server),
    reloadTls: () => server.setSecureContext(secureContextOptions(cfg, deps.log))
  }
}
