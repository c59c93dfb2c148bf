import net from 'node:net'
import type { ListenerFactory } from './types.js'
import { closeServer, gateConnections, listenServer } from './bind.js'

/** MQTT over plain TCP. */
export const tcpListener: ListenerFactory = (cfg, deps) => {
  const server = net.createServer({ noDelay: true })
  // registered first: a socket the broker does not admit is destroyed before the MQTT handler sees it
  gateConnections(server, cfg, deps.admit)
  server.on('connection', socket => {
    if (socket.destroyed) return
    deps.onConnection(socket, { listener: cfg, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort })
  })
  return {
    config: cfg,
    listen: () => listenServer(server, cfg, deps.log),
    close: () => closeServer(server)
  }
}
