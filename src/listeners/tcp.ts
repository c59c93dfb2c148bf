import net from 'node:net'
import type { ListenerFactory } from './types.js'
import { closeServer, listenServer } from './bind.js'

/** MQTT over plain TCP. */
export const tcpListener: ListenerFactory = (cfg, deps) => {
  const server = net.createServer({ noDelay: true }, socket => {
    deps.onConnection(socket, { listener: cfg, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort })
  })
  return {
    config: cfg,
    listen: () => listenServer(server, cfg),
    close: () => closeServer(server)
  }
}
