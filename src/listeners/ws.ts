import http from 'node:http'
import https from 'node:https'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws'
import type { ListenerFactory } from './types.js'
import { closeServer, gateConnections, listenServer } from './bind.js'
import { secureContextOptions, tlsPeerOf } from './tls-options.js'
import { serveHttpDir } from './http-dir.js'

/** Paths that MQTT clients use for MQTT over WebSocket: `/mqtt` (MQTT.js, paho, mosquitto) and `/`. */
const MQTT_PATHS = new Set(['/mqtt', '/'])
/** Sub-protocols we speak: MQTT 3.1.1 (`mqtt`) and 3.1 (`mqttv3.1`). */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1']

/**
 * Two fixes to ws' stream for MQTT (12-profile.test.ts shows the first):
 *  - aedes destroys the connection right after writing a refusing CONNACK; ws' destroy() calls terminate(),
 *    which destroys the socket and, on TLS, drops what is still being encrypted: a wss client got the CONNACK's
 *    first byte and a close (1006). Here terminate() ends the socket after pending data instead, and destroys it
 *    if that has not happened within a second;
 *  - mqtt-packet writes a packet field by field, each write becoming its own WebSocket frame; it corks the
 *    stream per packet, so a `_writev` sends the corked fields as one frame.
 */
function flushBeforeClose (ws: WebSocket, raw: Duplex, stream: Duplex): void {
  ws.terminate = function flushingTerminate () {
    if (raw.destroyed) return
    raw.end()
    setTimeout(() => raw.destroy(), 1000).unref()
  }
  const s = stream as Duplex & { _writev?: (chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void) => void }
  s._writev = (chunks, cb) => {
    if (ws.readyState !== ws.OPEN) { cb(new Error('WebSocket is not open')); return }
    ws.send(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map(c => c.chunk)), { binary: true }, cb)
  }
}

/** MQTT over WebSocket (`protocol websockets`), secure when the listener has certfile/keyfile. */
export const wsListener: ListenerFactory = (cfg, deps) => {
  const secure = cfg.transport === 'wss'
  const route: http.RequestListener = (req, res) => {
    if (deps.http) { deps.http(req, res, cfg); return }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found\n')
  }
  // http_dir: a file there answers the request; anything else goes to Midge's routes
  const httpDir = cfg.httpDir
  const onRequest: http.RequestListener = httpDir === undefined
    ? route
    : (req, res) => {
        serveHttpDir(httpDir, req, res).then(served => { if (!served) route(req, res) }, () => { if (!res.headersSent) route(req, res) })
      }
  // websockets_headers_size: the largest request head accepted (Node's default when unset)
  const serverOpts: http.ServerOptions = cfg.maxHeaderSize !== undefined ? { maxHeaderSize: cfg.maxHeaderSize } : {}
  const server = secure ? https.createServer({ ...serverOpts, ...secureContextOptions(cfg, deps.log) }, onRequest) : http.createServer(serverOpts, onRequest)
  gateConnections(server, cfg, deps.admit)
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    maxPayload: deps.maxPayload ?? 268_435_460,
    handleProtocols: (protocols) => {
      for (const p of SUBPROTOCOLS) if (protocols.has(p)) return p
      return false
    }
  })
  server.on('upgrade', (req, socket: Duplex, head) => {
    const path = (req.url ?? '/').split('?')[0]!
    if (!MQTT_PATHS.has(path)) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      return
    }
    socket.on('error', () => socket.destroy())
    wss.handleUpgrade(req, socket, head, ws => {
      const stream = createWebSocketStream(ws)
      // createWebSocketStream emits 'error' for bad frames; the broker sees it through aedes' conn 'error'
      const raw = req.socket
      flushBeforeClose(ws, raw, stream)
      deps.log.debug({ listener: cfg.id, remoteAddress: raw.remoteAddress, protocol: ws.protocol }, 'websocket upgraded')
      deps.onConnection(stream, {
        listener: cfg,
        remoteAddress: raw.remoteAddress,
        remotePort: raw.remotePort,
        tlsPeer: secure ? tlsPeerOf(raw as TLSSocket) : undefined
      }, req)
    })
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // a request head beyond websockets_headers_size (or Node's default) gets its status, as from a web server
    if (err.code === 'HPE_HEADER_OVERFLOW' && socket.writable) socket.end('HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
    else socket.destroy()
  })
  return {
    config: cfg,
    ...(secure ? { reloadTls: () => (server as https.Server).setSecureContext(secureContextOptions(cfg, deps.log)) } : {}),
    listen: () => listenServer(server, cfg, deps.log),
    close: async () => {
      await closeServer(server)
      for (const client of wss.clients) client.terminate()
      wss.close()
    }
  }
}
