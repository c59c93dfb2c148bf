/**
 * The README's test.mosquitto.org set-up, through the built binary (`npm run build` first): `midge certs ...` as
 * the README runs them, then `midge -c config/test-mosquitto-org.conf` from the same directory, so the file's
 * relative paths (certs/, config/) resolve as they will for a user. Only the ports differ: `listener 0 127.0.0.1`.
 */
import { test, expect } from 'vitest'
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import { tempDir } from '../helpers/start-broker.js'
import { spawnMidge, runMidge } from '../helpers/processes.js'

const run = promisify(execFile)
const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')

test('the README\'s commands make the certificates and start the profile; TLS, passwords and the CSR page work', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-profile-cli-')
  onTestFinished(remove)
  mkdirSync(join(dir, 'config'))
  for (const f of ['test-mosquitto-org.passwd', 'test-mosquitto-org.acl']) copyFileSync(join(ROOT, 'config', f), join(dir, 'config', f))
  const conf = readFileSync(join(ROOT, 'config/test-mosquitto-org.conf'), 'utf8')
  const ports = [...conf.matchAll(/^listener (\d+)$/gm)].map(m => Number(m[1]))
  writeFileSync(join(dir, 'config/test-mosquitto-org.conf'), conf.replace(/^listener \d+$/gm, 'listener 0 127.0.0.1'))

  // the README's commands (with "midge" for "npx midge")
  for (const args of [
    ['certs', 'ca', '--dir', 'certs', '--cn', 'Midge test CA'],
    ['certs', 'server', '--dir', 'certs', '--host', 'localhost', '--host', '127.0.0.1'],
    ['certs', 'server', '--dir', 'certs', '--name', 'expired', '--expired', '--host', 'localhost', '--host', '127.0.0.1']
  ]) {
    const r = await runMidge(args, dir)
    expect([args.join(' '), r.code]).toEqual([args.join(' '), 0])
  }
  const m = await spawnMidge('config/test-mosquitto-org.conf', dir)
  onTestFinished(async () => { await m.kill('SIGTERM') })
  expect(m.ports.length).toBe(ports.length)
  const port = (n: number): number => m.ports[ports.indexOf(n)]!
  expect(m.output()).toContain('serving it anyway (allow_expired_certificate true)')

  const ca = readFileSync(join(dir, 'certs/ca.crt'))
  const rw = await mqtt.connectAsync(`mqtts://127.0.0.1:${port(8885)}`, { reconnectPeriod: 0, ca, username: 'rw', password: 'readwrite', clientId: 'cli-rw' })
  onTestFinished(async () => { await rw.endAsync(true) })

  // a client certificate from the page, then MQTT on 8884 with Debian's mosquitto clients
  await run('openssl', ['genrsa', '-out', join(dir, 'client.key'), '2048'])
  await run('openssl', ['req', '-new', '-key', join(dir, 'client.key'), '-out', join(dir, 'client.csr'), '-subj', '/CN=cli'])
  const res = await fetch(`http://127.0.0.1:${port(8080)}/ssl/csr`, { method: 'POST', body: readFileSync(join(dir, 'client.csr')) })
  expect(res.status).toBe(200)
  writeFileSync(join(dir, 'client.crt'), await res.text())
  const got = new Promise<string>(resolve => rw.on('message', (_t, p) => resolve(p.toString())))
  await rw.subscribeAsync('cli/8884', { qos: 1 })
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port(8884)), '--cafile', join(dir, 'certs/ca.crt'),
    '--cert', join(dir, 'client.crt'), '--key', join(dir, 'client.key'), '-t', 'cli/8884', '-m', 'from 8884', '-q', '1'])
  expect(await got).toBe('from 8884')

  const metrics = await (await fetch(`http://127.0.0.1:${port(8080)}/metrics`)).text()
  // listener ids come from the configured port (0 here): 8884 is the second TLS listener, tls:0-2
  expect(metrics).toMatch(/^midge_listener_connections_total\{listener="tls:0-2"\} 1$/m)
  expect(await (await fetch(`http://127.0.0.1:${port(8080)}/healthz`)).json()).toEqual({ status: 'ok' })
  const stopped = await m.kill('SIGTERM')
  expect(stopped.code).toBe(0)
}, 60_000) // four processes make RSA keys: slow on a loaded machine
