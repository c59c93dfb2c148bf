/**
 * The web console in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
 * log in, create a user and an ACL rule, connect the WebSocket panel as that user, subscribe, receive what
 * mosquitto_pub sends, publish what mosquitto_sub receives, kick a client and see it leave the table; the same
 * page at phone width. Screenshots go to a temp dir (printed), kept for a look after the run.
 */
import { test, expect, beforeAll, afterAll } from 'vitest'
import { mkdtemp, writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import type { MqttClient } from 'mqtt'
import { startTestBroker, tempDir, type TestBroker } from '../helpers/start-broker.js'
import { connect } from '../helpers/mqtt.js'
import { hashPassword } from '../../src/auth/password-hash.js'
import { storeOf } from '../../src/sys/stats.js'
import { run } from '../helpers/processes.js'

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
const ADMIN_PASSWORD = 'console-admin-pw-1'

let browser: Browser
let b: TestBroker
let base: string
let shots: string
const cleanups: Array<() => Promise<unknown>> = []

beforeAll(async () => {
  // the console is a build product (dist/console/); build it the way `npm run build` does
  const built = await run(process.execPath, ['src/console/build.mjs'])
  expect(built.code, built.stderr).toBe(0)
  const { dir, remove } = await tempDir('midge-console-')
  cleanups.push(remove)
  shots = await mkdtemp(join(tmpdir(), 'midge-console-shots-'))
  await writeFile(join(dir, 'passwd'), '')
  await writeFile(join(dir, 'acl'), '')
  await writeFile(join(dir, 'admin.pw'), `admin:${hashPassword(ADMIN_PASSWORD)}\n`)
  b = await startTestBroker([
    'allow_anonymous false', `password_file ${dir}/passwd`, `acl_file ${dir}/acl`, `admin_password_file ${dir}/admin.pw`,
    'listener 0 127.0.0.1', 'listener 0 127.0.0.1', 'protocol websockets', 'admin_enabled true'
  ].join('\n'))
  cleanups.push(() => b.close())
  base = `http://127.0.0.1:${b.port('ws')}`
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS })
  cleanups.push(() => browser.close())
}, 30_000)

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {})
  // the screenshots are for a person to look at: kept with MIDGE_KEEP_SCREENSHOTS=1, otherwise removed with the rest
  if (process.env.MIDGE_KEEP_SCREENSHOTS === '1') console.log(`console screenshots: ${shots}`)
  else await rm(shots, { recursive: true, force: true })
})

/** data-client of each row of the clients table, in order. */
function clientRows (page: Page): Promise<unknown> {
  return page.evaluate("Array.from(document.querySelectorAll('#clients-table tbody tr'), r => r.getAttribute('data-client'))")
}

async function shot (page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true })
}

test('log in, add a user and a rule, talk MQTT from the page with mosquitto_pub/sub, kick a client', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } })
  const errors: string[] = []
  page.on('pageerror', e => errors.push(e.message))
  page.on('dialog', d => { void d.accept() })

  const res = await page.goto(base + '/')
  expect(res!.status()).toBe(200)
  expect(res!.headers()['content-security-policy']).toContain("script-src 'self'")
  await page.fill('#login-user', 'admin')
  await page.fill('#login-password', 'wrong')
  await page.click('#login-submit')
  await expect.poll(() => page.textContent('#login-error')).toBe('Wrong user name or password.')
  await page.fill('#login-password', ADMIN_PASSWORD)
  await page.click('#login-submit')
  await page.waitForSelector('#tab-overview.active')
  // the session cookie is HttpOnly: the page's script cannot read it
  expect(await page.evaluate('document.cookie')).toBe('')
  // waitForFunction evaluates its predicate with eval() in the page, which the console's CSP forbids (a CI run
  // failed on that); textContent reads from Playwright's own isolated world
  await expect.poll(() => page.textContent('#stat-connections')).toBe('0')
  await shot(page, '1-overview')

  // a user and an ACL rule, through the forms
  await page.click('#tab-users')
  await page.fill('#user-name', 'dana')
  await page.fill('#user-password', 'first-pw')
  await page.click('#user-add')
  await page.waitForSelector('#users-table tr[data-user="dana"]')
  expect(await page.textContent('#users-table tr[data-user="dana"]')).toContain('active')
  // change it in the row's own form; the WebSocket panel below logs in with the new one
  await page.click('#users-table button[data-password="dana"]')
  await page.fill('#users-table tr[data-user="dana"] input.new-password', 'dana-pw')
  await page.click('#users-table tr[data-user="dana"] .row-form button[type=submit]')
  await page.waitForSelector('#users-table tr[data-user="dana"] .row-form', { state: 'detached' })
  await page.click('#tab-acl')
  await page.selectOption('#acl-kind', 'topic')
  await page.fill('#acl-user', 'dana')
  await page.selectOption('#acl-access', 'readwrite')
  await page.fill('#acl-topic', 'chat/#')
  await page.click('#acl-add')
  await page.waitForSelector('#acl-table tbody tr[data-rule]')
  expect(await page.evaluate("Array.from(document.querySelectorAll('#acl-table tbody tr'), r => Array.from(r.querySelectorAll('td')).slice(0, 4).map(td => td.textContent))")).toEqual([['topic', 'dana', 'readwrite', 'chat/#']])
  await shot(page, '2-acl')

  // the WebSocket panel, as dana, against Midge's own WebSocket listener (the default URL)
  await page.click('#tab-websocket')
  expect(await page.inputValue('#ws-url')).toBe(`ws://127.0.0.1:${b.port('ws')}/mqtt`)
  await page.fill('#ws-user', 'dana')
  await page.fill('#ws-password', 'dana-pw')
  await page.fill('#ws-client-id', 'dana-browser')
  await page.click('#ws-connect')
  await expect.poll(() => page.textContent('#ws-status'), { timeout: 10_000 }).toBe('Connected as dana')
  await page.fill('#ws-sub-topic', 'chat/#')
  await page.selectOption('#ws-sub-qos', '1')
  await page.click('#ws-subscribe')
  await page.waitForSelector('#ws-messages li.event:text("subscribed to chat/# (QoS 1)")')

  const port = String(b.port('tcp'))
  const pub = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-u', 'dana', '-P', 'dana-pw', '-t', 'chat/room1', '-m', 'hello from mosquitto_pub', '-q', '1'])
  expect(pub.code).toBe(0)
  await page.waitForSelector('#ws-messages li.msg')
  expect(await page.locator('#ws-messages li.msg').allTextContents()).toEqual(['chat/room1 hello from mosquitto_pub QoS 1'])

  const subscribed = new Promise<void>(resolve => b.broker.aedes.on('subscribe', (_s, client) => { if (client.id === 'dana-sub') resolve() }))
  const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-u', 'dana', '-P', 'dana-pw', '-i', 'dana-sub', '-t', 'chat/out', '-C', '1', '-q', '1'])
  await subscribed
  await page.fill('#ws-pub-topic', 'chat/out')
  await page.fill('#ws-pub-payload', 'hello from the browser')
  await page.selectOption('#ws-pub-qos', '1')
  await page.click('#ws-publish')
  const got = await sub
  expect([got.code, got.stdout]).toEqual([0, 'hello from the browser\n'])
  await page.waitForSelector('#ws-messages li.event:text("published to chat/out")')
  await shot(page, '3-websocket')

  // the retained-message browser: a message kept by mosquitto_pub -r, shown, then deleted
  expect((await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-u', 'dana', '-P', 'dana-pw', '-t', 'chat/status', '-m', 'online', '-r'])).code).toBe(0)
  await page.click('#tab-retained')
  await page.fill('#retained-filter', 'chat/#')
  await page.click('#retained-form button[type=submit]')
  // the table may still show the previous listing (every retained topic, $SYS included) when the row appears:
  // wait for the filtered one
  await expect.poll(() => page.locator('#retained-table tbody tr td').allTextContents(), { timeout: 10_000 })
    .toEqual(['chat/status', 'online', '6', '0', 'Delete'])
  await shot(page, '4-retained')
  await page.click('#retained-table button.danger')
  await page.waitForSelector('#retained-table tr.empty')
  const left: string[] = []
  for await (const m of storeOf(b.broker.aedes).createRetainedStream('chat/#')) if (m.payload.length > 0) left.push(m.payload.toString())
  expect(left).toEqual([])

  // the clients table, and a kick
  const victim: MqttClient = await connect(b.url('tcp'), { username: 'dana', password: 'dana-pw', clientId: 'victim' })
  const victimClosed = new Promise<void>(resolve => victim.once('close', () => resolve()))
  await page.click('#tab-clients')
  await page.waitForSelector('#clients-table tr[data-client="victim"]')
  expect(await clientRows(page)).toEqual(['dana-browser', 'victim'])
  expect(await page.textContent('#clients-table tr[data-client="dana-browser"]')).toContain('chat/# (1)')
  await shot(page, '5-clients')
  await page.click('#clients-table button[data-kick="victim"]')
  await page.waitForSelector('#clients-table tr[data-client="victim"]', { state: 'detached' })
  await victimClosed
  expect(await clientRows(page)).toEqual(['dana-browser'])

  // phone width: no horizontal scrolling of the page, stacked table rows
  await page.setViewportSize({ width: 390, height: 844 })
  await page.waitForSelector('#clients-table tr[data-client="dana-browser"]')
  expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390)
  await shot(page, '6-phone-clients')
  await page.click('#tab-websocket')
  expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390)
  await shot(page, '7-phone-websocket')

  // nothing secret in what the server sent: the page and script carry no credentials
  const html = await (await fetch(base + '/')).text()
  const js = await (await fetch(base + '/console/console.js')).text()
  for (const secret of [ADMIN_PASSWORD, 'dana-pw']) {
    expect(html).not.toContain(secret)
    expect(js).not.toContain(secret)
  }
  expect(errors).toEqual([])
  await page.close()
}, 30_000)
