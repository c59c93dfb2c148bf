/**
 * The web console's files: `GET /` is the page, `GET /console/NAME` its script, style sheet and MQTT.js's
 * browser build, all produced by `npm run build` into dist/console/ (src/console/build.mjs), never committed.
 * The page carries no credentials and no inline script, so its Content-Security-Policy allows only this origin
 * (plus WebSocket connections, for the MQTT panel).
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { SECURITY_HEADERS } from './http.js'

/** dist/console/ from both src/admin/ (tests) and dist/admin/ (the built daemon). */
export const CONSOLE_DIR = fileURLToPath(new URL('../../dist/console/', import.meta.url))

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml'
}

export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self' ws: wss:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'"
].join('; ')

async function sendFile (req: IncomingMessage, res: ServerResponse, name: string, dir: string): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('Method not allowed\n')
    return
  }
  let body: Buffer
  try { body = await readFile(join(dir, name)) } catch {
    if (name === 'index.html') {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end('The console is not built: run "npm run build".\n')
    } else res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found\n')
    return
  }
  const ext = name.slice(name.lastIndexOf('.') + 1)
  res.writeHead(200, {
    ...SECURITY_HEADERS,
    'content-type': TYPES[ext] ?? 'application/octet-stream',
    'content-length': body.length,
    'content-security-policy': CSP
  })
  res.end(req.method === 'HEAD' ? undefined : body)
}

/** Route handlers for `/` and `/console/*`; names are checked against a strict pattern (no paths). */
export function consoleHandlers (dir = CONSOLE_DIR): { index: (req: IncomingMessage, res: ServerResponse) => Promise<void>, asset: (req: IncomingMessage, res: ServerResponse) => Promise<void> } {
  return {
    index: (req, res) => sendFile(req, res, 'index.html', dir),
    asset: async (req, res) => {
      const name = (req.url ?? '').split('?')[0]!.slice('/console/'.length)
      if (!/^[a-z0-9][a-z0-9.-]*\.(js|css|svg)$/.test(name)) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found\n')
        return
      }
      await sendFile(req, res, name, dir)
    }
  }
}
