/**
 * Plain HTTP on websockets listeners: everything that is not an MQTT upgrade lands here. Modules register
 * routes (`/healthz`, `/metrics`, `/api/v1/...`, the console); unknown paths answer 404.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ListenerConfig } from '../config/schema.js'

export type RouteHandler = (req: IncomingMessage, res: ServerResponse, listener: ListenerConfig) => void | Promise<void>

interface Route { prefix: boolean, path: string, handler: RouteHandler, listeners?: (l: ListenerConfig) => boolean }

export class HttpRouter {
  private readonly routes: Route[] = []

  /** Exact path, or a prefix when `path` ends with `/*`. `when` restricts the route to some listeners. */
  add (path: string, handler: RouteHandler, when?: (l: ListenerConfig) => boolean): void {
    const prefix = path.endsWith('/*')
    this.routes.push({ prefix, path: prefix ? path.slice(0, -1) : path, handler, listeners: when })
  }

  handle = (req: IncomingMessage, res: ServerResponse, listener: ListenerConfig): void => {
    const path = (req.url ?? '/').split('?')[0]!
    for (const r of this.routes) {
      if (r.listeners && !r.listeners(listener)) continue
      if (r.prefix ? path.startsWith(r.path) : path === r.path) {
        Promise.resolve(r.handler(req, res, listener)).catch((err: Error) => {
          if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ error: { code: 'MIDGE_ERR_HTTP_INTERNAL', message: err.message } }))
        })
        return
      }
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found\n')
  }
}
