/**
 * The store at start-up: a data dir held by another Midge, a corrupted store and its documented recovery
 * (`midge store repair -c FILE`). Real child processes (`npm run build` first).
 */
import { test, expect } from 'vitest'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { tempDir } from '../helpers/start-broker.js'
import { spawnMidge, runMidge, writeConf } from '../helpers/processes.js'

const CONF = `listener 0 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/data
`

test('a second Midge on the same persistence_location exits 1 with one line saying the store is locked', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-store-')
  onTestFinished(remove)
  const conf = await writeConf(dir, CONF)
  const first = await spawnMidge(conf, dir)
  onTestFinished(async () => { await first.kill('SIGKILL') })
  const second = await runMidge(['-c', conf], dir)
  expect(second.code).toBe(1)
  const lines = second.output.trim().split('\n')
  expect(lines.at(-1)).toBe(`Error: persistence store ${join(dir, 'data', 'midge.db')} is locked: another Midge is using it.`)
  // the first one is unharmed
  const c = await mqtt.connectAsync(first.url(), { reconnectPeriod: 0 })
  await c.endAsync()
  expect((await first.kill('SIGTERM')).code).toBe(0)
})

test('a corrupted store stops start-up with exit 1 and the recovery command; `midge store repair` brings the data back', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-store-')
  onTestFinished(remove)
  const conf = await writeConf(dir, CONF)
  const first = await spawnMidge(conf, dir)
  onTestFinished(async () => { await first.kill('SIGKILL') })
  const pub = await mqtt.connectAsync(first.url(), { reconnectPeriod: 0 })
  await pub.publishAsync('keep/me', 'retained payload', { qos: 1, retain: true })
  await pub.endAsync()
  expect((await first.kill('SIGTERM')).code).toBe(0)

  // damage LevelDB's manifest, as a torn write or a bad disk would
  const store = join(dir, 'data', 'midge.db')
  const manifest = readdirSync(store).find(f => f.startsWith('MANIFEST-'))!
  writeFileSync(join(store, manifest), Buffer.alloc(256, 7))

  const failed = await runMidge(['-c', conf], dir)
  expect(failed.code).toBe(1)
  expect(failed.output.trim().split('\n').at(-1)).toBe(
    `Error: persistence store ${store} is corrupted (Corruption: no meta-nextfile entry in descriptor). Back it up, then run "midge store repair -c CONFIG" (see the README, durability).`)
  // not wiped: the broker refused to start and left the files alone
  expect(readdirSync(store)).toContain(manifest)

  const check = await runMidge(['store', 'check', '-c', conf], dir)
  expect(check.code).toBe(1)
  expect(check.output).toContain('is corrupted')

  const repaired = await runMidge(['store', 'repair', '-c', conf], dir)
  expect(repaired.output).toMatch(new RegExp(`^Store ${store.replaceAll('/', '\\/')} repaired: .*retained \\d+`, 'm'))
  expect(repaired.code).toBe(0)

  const second = await spawnMidge(conf, dir)
  onTestFinished(async () => { await second.kill('SIGKILL') })
  const sub = await mqtt.connectAsync(second.url(), { reconnectPeriod: 0 })
  const got = new Promise<[string, string, boolean]>(resolve => sub.once('message', (t, p, pk) => resolve([t, p.toString(), pk.retain])))
  await sub.subscribeAsync('keep/#', { qos: 1 })
  expect(await got).toEqual(['keep/me', 'retained payload', true])
  await sub.endAsync()
})

test('`midge store repair` refuses while a broker holds the store', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-store-')
  onTestFinished(remove)
  const conf = await writeConf(dir, CONF)
  const first = await spawnMidge(conf, dir)
  onTestFinished(async () => { await first.kill('SIGKILL') })
  const r = await runMidge(['store', 'repair', '-c', conf], dir)
  expect(r.code).toBe(1)
  expect(r.output.trim().split('\n').at(-1)).toBe(`Error: persistence store ${join(dir, 'data', 'midge.db')} is locked: stop the Midge using it first.`)
})
