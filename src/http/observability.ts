/**
 * `GET /metrics` (Prometheus text format) and `GET /healthz` (process up and store writable) on every listener
 * that serves HTTP (websockets listeners), unless the listener says `http_metrics false`.
 */
import type { ServerResponse } from 'node:http'
import type { MetricsSource } from '../sys/metrics.js'
import type { ListenerConfig } from '../config/schema.js'
import type { HttpRouter } from './router.js'

import type { StoreView } from '../sys/stats.js'
import { HEALTH_TOPIC } from '../mqtt/reserved-topics.js'

type RetainedStore = Pick<StoreView, 'storeRetained'>

export interface ObservabilityDeps {
  metrics: MetricsSource
  store: () => RetainedStore | undefined
  closing: () => boolean
  /** How long the store may take to answer before /healthz says 503. */
  timeoutMs?: number
}

function metricsEnabled (l: ListenerConfig): boolean {
  return l.http?.metrics !== false
}

function methodNotAllowed (res: ServerResponse): void {
  res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('Method not allowed\n')
}

/** Writes then deletes a retained probe through the same persistence API that aedes uses. */
export async function checkStore (store: RetainedStore | undefined, timeoutMs: number): Promise<string | undefined> {
  if (!store) return 'store not open'
  const probe = async (): Promise<void> => {
    const base = { cmd: 'publish', topic: HEALTH_TOPIC, qos: 0, retain: true, dup: false } as const
    await store.storeRetained({ ...base, payload: Buffer.from(String(Date.now())) })
    await store.storeRetained({ ...base, payload: Buffer.alloc(0) })
  }
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<string>(resolve => { timer = setTimeout(() => resolve(`store did not answer within ${timeoutMs} ms`), timeoutMs) })
  try {
    return await Promise.race([probe().then(() => undefined, (err: Error) => `store not writable: ${err.message}`), timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** How long /healthz waits for the store to answer before it reports it as failing. */
const STORE_CHECK_TIMEOUT_MS = 2_000

export function registerObservabilityRoutes (router: HttpRouter, deps: ObservabilityDeps): void {
  router.add('/metrics', async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') { methodNotAllowed(res); return }
    const body = await deps.metrics.metrics()
    res.writeHead(200, { 'content-type': deps.metrics.contentType, 'cache-control': 'no-store' })
    res.end(req.method === 'HEAD' ? undefined : body)
  }, metricsEnabled)

  router.add('/healthz', async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') { methodNotAllowed(res); return }
    const problem = deps.closing() ? 'shutting down' : await checkStore(deps.store(), deps.timeoutMs ?? STORE_CHECK_TIMEOUT_MS)
    const body = JSON.stringify(problem ? { status: 'error', error: problem } : { status: 'ok' })
    res.writeHead(problem ? 503 : 200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    res.end(req.method === 'HEAD' ? undefined : `${body}\n`)
  })
}
