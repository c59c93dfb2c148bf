/**
 * `http_dir` on a websockets listener: plain HTTP GET/HEAD requests are answered from that directory, as mosquitto
 * serves test.mosquitto.org's page. A path that does not name a file falls through to Midge's own routes (/metrics,
 * /healthz, the CSR page, the admin console) and then 404. Nothing outside the directory is ever served: `..`
 * segments are refused and symbolic links must resolve inside it.
 */
import { createReadStream } from 'node:fs'
import { realpath, stat } from 'node:fs/promises'
import { extname, join, sep } from 'node:path'
import type { IncomingMessage, ServerResponse } from 'node:http'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.wasm': 'application/wasm',
  '.pem': 'application/x-pem-file',
  '.crt': 'application/x-x509-ca-cert',
  '.woff2': 'font/woff2'
}

/** The file a request path names inside root, or undefined when it names nothing servable. */
async function resolveFile (root: string, urlPath: string): Promise<{ path: string, size: number } | undefined> {
  let decoded: string
  try { decoded = decodeURIComponent(urlPath) } catch { return undefined }
  if (decoded.includes('\0') || decoded.split('/').includes('..')) return undefined
  let realRoot: string
  try { realRoot = await realpath(root) } catch { return undefined }
  let path = join(realRoot, decoded)
  try {
    let st = await stat(path)
    if (st.isDirectory()) { path = join(path, 'index.html'); st = await stat(path) }
    if (!st.isFile()) return undefined
    const real = await realpath(path)
    if (real !== realRoot && !real.startsWith(realRoot + sep)) return undefined
    return { path: real, size: st.size }
  } catch {
    return undefined
  }
}

/** Serves the request from root if it names a file there; resolves false when the request is not for a file. */
export async function serveHttpDir (root: string, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false
  const urlPath = (req.url ?? '/').split('?')[0]!
  const file = await resolveFile(root, urlPath)
  if (file === undefined) return false
  res.writeHead(200, {
    'content-type': TYPES[extname(file.path).toLowerCase()] ?? 'application/octet-stream',
    'content-length': file.size,
    'x-content-type-options': 'nosniff'
  })
  if (req.method === 'HEAD') { res.end(); return true }
  const stream = createReadStream(file.path)
  stream.on('error', () => res.destroy())
  stream.pipe(res)
  return true
}
