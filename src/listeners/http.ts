import http from 'node:http'
import https from 'node:https'
import type { ListenerFactory } from './types.js'
import { closeServer, gateConnections, listenServer } from './bind.js'
import { secureContextOptions } from './tls-options.js'
import { serveHttpDir } from './http-dir.js'

/**
 * `protocol http` (a Midge extension; mosquitto has no such value): plain HTTP only, for /metrics, /healthz, the
 * CSR page and the admin API without MQTT on that port; HTTPS with certfile/keyfile. WebSocket upgrades are
 * refused: MQTT over WebSocket is `protocol websockets`, which serves the same HTTP routes.
 */
export const httpListener: ListenerFactory = (cfg, deps) => {
  const route: http.RequestListener = (req, res) => {
    if (deps.http) { deps.http(req, res, cfg); return }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found\n')
  }
  // http_dir: as on websockets listeners, a file there answers first
  const httpDir = cfg.httpDir
  const onRequest: http.RequestListener = httpDir === undefined
    ? route
    : (req, res) => {
        serveHttpDir(httpDir, req, res).then(served => { if (!served) route(req, res) }, () => { if (!res.headersSent) route(req, res) })
      }
  const server = cfg.transport === 'https' ? https.createServer(secureContextOptions(cfg, deps.log), onRequest) : http.createServer(onRequest)
  gateConnections(server, cfg, deps.admit)
  server.on('upgrade', (_req, socket) => {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
  })
  // not HTTP (an MQTT client on the wrong port, say): one 400 and close, as node does by default
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
    else socket.destroy()
  })
  return {
    config: cfg,
    listen: () => listenServer(server, cfg, deps.log),
    close: () => closeServer(server),
    ...(cfg.transport === 'https' ? { reloadTls: () => (server as https.Server).setSecureContext(secureContextOptions(cfg, deps.log)) } : {})
  }
}
