/**
 * The admin API (`/api/v1/*`) and the web console (`/`, `/console/*`). Off unless a websockets
 * listener says `admin_enabled true`; then only on those listeners (TLS when the listener has TLS).
 */
import type { HttpRouter } from '../http/router.js'
import type { ListenerConfig } from '../config/schema.js'
import { AdminApi, type AdminBroker } from './api.js'
import { consoleHandlers } from './static.js'

export { AdminApi, type AdminBroker } from './api.js'
export { ADMIN_ERR } from './errors.js'

export function adminEnabled (l: ListenerConfig): boolean {
  return l.http?.admin === true
}

/** Registers the routes when any listener enables the admin API; returns the API (tests) or undefined. */
export function registerAdminRoutes (router: HttpRouter, broker: AdminBroker): AdminApi | undefined {
  if (!broker.config.listeners.some(adminEnabled)) return undefined
  const api = new AdminApi(broker)
  router.add('/api/v1', api.handle, adminEnabled)
  router.add('/api/v1/*', api.handle, adminEnabled)
  const files = consoleHandlers()
  router.add('/', files.index, adminEnabled)
  router.add('/console/*', files.asset, adminEnabled)
  return api
}
