/**
 * Packaging: docker/compose.yaml validated with Debian's docker-compose (no Docker engine runs on CI
 * machines, so the image itself is not built here), the Dockerfile's HEALTHCHECK command run against a real
 * Midge, and config/midge.service checked with systemd-analyze when it is installed.
 */
import { test, expect } from 'vitest'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { readFileSync, existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startTestBroker } from '../helpers/start-broker.js'

const run = promisify(execFile)
const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const DOCKERFILE = readFileSync(join(ROOT, 'docker/Dockerfile'), 'utf8')

async function which (cmd: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${cmd}`]).then(() => true, () => false)
}

test('docker/compose.yaml is valid: one service built from docker/Dockerfile, store on a named volume, config from ../config', async () => {
  // .ci/run installs Debian's docker-compose for exactly this check
  expect(await which('docker-compose')).toBe(true)
  const cwd = join(ROOT, 'docker')
  const { stdout } = await run('docker-compose', ['-f', 'compose.yaml', 'config'], { cwd })
  expect((await run('docker-compose', ['-f', 'compose.yaml', 'config', '--services'], { cwd })).stdout.trim()).toBe('midge')
  expect((await run('docker-compose', ['-f', 'compose.yaml', 'config', '--volumes'], { cwd })).stdout.trim()).toBe('midge-data')
  expect(stdout).toContain(`context: ${ROOT}\n`)
  expect(stdout).toContain('dockerfile: docker/Dockerfile')
  expect(stdout).toContain('- midge-data:/data:rw')
  expect(stdout).toContain(`- ${join(ROOT, 'config')}:/etc/midge:ro`)
  expect(stdout).toContain('init: true')
  expect(stdout).toMatch(/published: 1883\s+target: 1883/)
})

test('docker/Dockerfile: multi-stage on Node 20 slim, non-root, /data volume, exec-form entrypoint, HEALTHCHECK on /healthz', () => {
  const froms = [...DOCKERFILE.matchAll(/^FROM (\S+)/gm)].map(m => m[1])
  expect(froms).toEqual(['node:20-bookworm-slim', 'node:20-bookworm-slim'])
  expect(DOCKERFILE).toMatch(/^RUN npm run build && npm prune --omit=dev/m)
  expect(DOCKERFILE).toMatch(/^USER node$/m)
  expect(DOCKERFILE).toMatch(/^VOLUME \["\/data"\]$/m)
  expect(DOCKERFILE).toMatch(/^ENTRYPOINT \["node", "\/app\/dist\/main.js"\]$/m)
  expect(DOCKERFILE).toMatch(/^ENV HEALTHCHECK_URL=http:\/\/127\.0\.0\.1:8080\/healthz$/m)
  // every COPY source from the build context exists and is let through by Dockerfile.dockerignore
  const ignore = readFileSync(join(ROOT, 'docker/Dockerfile.dockerignore'), 'utf8')
  for (const m of DOCKERFILE.matchAll(/^COPY (?!--from)(?:--chown=\S+ )?(.+) \S+$/gm)) {
    for (const src of m[1]!.split(' ')) {
      expect(existsSync(join(ROOT, src)), src).toBe(true)
      expect(ignore.includes(`!${src}`), `${src} in Dockerfile.dockerignore`).toBe(true)
    }
  }
  // the default config the image ships has the websockets listener the healthcheck asks
  expect(readFileSync(join(ROOT, 'config/midge.conf'), 'utf8')).toMatch(/^listener 8080\nprotocol websockets$/m)
})

test("the Dockerfile's HEALTHCHECK command exits 0 against a running Midge and 1 when nothing answers", async ({ onTestFinished }) => {
  const m = /HEALTHCHECK [^\n]*\\\n\s*CMD \["node", "-e", "(.+)"\]$/m.exec(DOCKERFILE)
  expect(m).not.toBeNull()
  const script = m![1]!
  const b = await startTestBroker('listener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\n')
  onTestFinished(() => b.close())
  const url = `http://127.0.0.1:${b.port('ws')}/healthz`
  const ok = await run(process.execPath, ['-e', script], { env: { ...process.env, HEALTHCHECK_URL: url } }).then(() => 0, (e: { code: number }) => e.code)
  expect(ok).toBe(0)
  await b.close()
  const down = await run(process.execPath, ['-e', script], { env: { ...process.env, HEALTHCHECK_URL: url } }).then(() => 0, (e: { code: number }) => e.code)
  expect(down).toBe(1)
})

test.skipIf(!existsSync('/usr/bin/systemd-analyze'))('config/midge.service passes systemd-analyze verify and keeps its sandbox', async () => {
  const unit = join(ROOT, 'config/midge.service')
  const { stdout, stderr } = await run('systemd-analyze', ['verify', unit], { cwd: '/tmp' })
  expect(stdout + stderr).toBe('')
  const text = readFileSync(unit, 'utf8')
  for (const line of ['User=midge', 'ProtectSystem=strict', 'StateDirectory=midge', 'Restart=on-failure', 'LimitNOFILE=65536',
    'ExecReload=/bin/kill -HUP $MAINPID', 'NoNewPrivileges=yes', 'CapabilityBoundingSet=', 'RestartPreventExitStatus=3']) {
    expect(text.split('\n')).toContain(line)
  }
})
