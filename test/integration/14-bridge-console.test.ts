/**
 * The Bridges tab of the web console in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
 * state, remote and counters of a bridge to Debian's mosquitto, following it when the remote goes away.
 */
import { test, expect } from 'vitest'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { startTestBroker, tempDir } from '../helpers/start-broker.js'
import { connect } from '../helpers/mqtt.js'
import { run } from '../helpers/processes.js'
import { startRemote } from '../helpers/bridge.js'
import { hashPassword } from '../../src/auth/password-hash.js'

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

test('the Bridges tab shows the bridge, its remote and counters, and the last error once the remote is gone', { timeout: 60_000 }, async ({ onTestFinished }) => {
  // the console is a build product (dist/console/); build it the way `npm run build` does
  const built = await run(process.execPath, ['src/console/build.mjs'])
  expect(built.code, built.stderr).toBe(0)
  const { dir, remove } = await tempDir('midge-bridge-console-')
  onTestFinished(remove)
  await writeFile(join(dir, 'admin.pw'), `admin:${hashPassword('console-pw-1')}\n`)
  const remote = await startRemote(onTestFinished)
  const local = await startTestBroker([
    `admin_password_file ${dir}/admin.pw`, 'listener 0 127.0.0.1', 'allow_anonymous true',
    'listener 0 127.0.0.1', 'protocol websockets', 'admin_enabled true',
    'connection cloud', `address 127.0.0.1:${remote.port}`, 'remote_clientid console-pi', 'restart_timeout 1',
    'remote_username pi', 'remote_password console-secret-9', 'topic up/# out 1'
  ].join('\n'))
  onTestFinished(() => local.close())
  await expect.poll(() => local.broker.bridges!.view()[0]!.state, { timeout: 10_000 }).toBe('connected')
  const pub = await connect(local.url(), { clientId: 'pub' }, onTestFinished)
  await pub.publishAsync('up/1', 'x', { qos: 1 })
  await expect.poll(() => local.broker.bridges!.view()[0]!.sent).toBe(1)

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS })
  onTestFinished(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } })
  const errors: string[] = []
  page.on('pageerror', e => errors.push(e.message))
  await page.goto(`http://127.0.0.1:${local.port('ws')}/`)
  await page.fill('#login-user', 'admin')
  await page.fill('#login-password', 'console-pw-1')
  await page.click('#login-submit')
  await page.waitForSelector('#tab-overview.active')
  await page.click('#tab-bridges')
  const row = (): Promise<unknown> => page.evaluate("Array.from(document.querySelectorAll('#bridges-table tr[data-bridge=\"cloud\"] td'), c => c.textContent)")
  await expect.poll(row, { timeout: 10_000 }).toEqual(['cloud', `connected to 127.0.0.1:${remote.port}`, '0', '1', '0', '0', '0', ''])
  expect(await page.content()).not.toContain('console-secret-9')

  await remote.daemon.stop()
  // the tab refreshes itself every 2 s: the state and the reason follow
  await expect.poll(async () => {
    const cells = await row() as string[]
    return [cells[1], /ECONNREFUSED/.test(cells[7] ?? '')]
  }, { timeout: 15_000 }).toEqual(['waiting', true])
  expect(errors).toEqual([])
})
