import type { Transport } from '../config/schema.js'
import type { ListenerFactory } from './types.js'
import { tcpListener } from './tcp.js'
import { tlsListener } from './tls.js'
import { wsListener } from './ws.js'
import { httpListener } from './http.js'

/** Adding a transport = one file + one line here. */
export const listenerFactories: Record<Transport, ListenerFactory> = {
  tcp: tcpListener,
  tls: tlsListener,
  ws: wsListener,
  wss: wsListener,
  http: httpListener,
  https: httpListener
}

export type { Listener, ListenerFactory, ConnectionContext, ConnectionHandler, HttpHandler } from './types.js'
