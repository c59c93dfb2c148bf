/**
 * The "bare aedes" baseline of the bench: the engine Midge is built on, with its defaults (mqemitter,
 * concurrency 100) and the same store as Midge (aedes-persistence in memory, or aedes-persistence-level on
 * classic-level), behind plain net / tls / ws servers. No auth, no packet guard, no logging.
 *
 *   node dist/bench/bare-aedes.js --port P [--ws-port P] [--tls-port P --cert F --key F] [--level DIR]
 */
import net from 'node:net'
import tls from 'node:tls'
import http from 'node:http'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { Aedes } from 'aedes'
import { WebSocketServer, createWebSocketStream } from 'ws'
import memoryPersistence from 'aedes-persistence'

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    'ws-port': { type: 'string' },
    'tls-port': { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    level: { type: 'string' }
  }
})

async function store (): Promise<unknown> {
  if (!values.level) return memoryPersistence()
  const { ClassicLevel } = await import('classic-level')
  const { default: levelPersistence } = await import('aedes-persistence-level')
  const db = new ClassicLevel<string, Buffer>(values.level, { valueEncoding: 'buffer' })
  await db.open()
  return levelPersistence(db)
}

const aedes = await Aedes.createBroker({ persistence: await store() as never })
const host = values.host!
const listening: Array<Promise<void>> = []
const listen = (server: net.Server, port: string): void => {
  listening.push(new Promise(resolve => server.listen(Number(port), host, resolve)))
}

if (values.port) listen(net.createServer(s => aedes.handle(s)), values.port)
if (values['tls-port']) {
  listen(tls.createServer({ cert: readFileSync(values.cert!), key: readFileSync(values.key!) }, s => aedes.handle(s)), values['tls-port'])
}
if (values['ws-port']) {
  const server = http.createServer()
  const wss = new WebSocketServer({ server, perMessageDeflate: false })
  wss.on('connection', (ws, req) => aedes.handle(createWebSocketStream(ws), req))
  listen(server, values['ws-port'])
}
await Promise.all(listening)
process.on('SIGTERM', () => aedes.close(() => process.exit(0)))
