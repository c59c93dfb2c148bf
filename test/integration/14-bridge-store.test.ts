/**
 * `midge store bridges`: the bridges' queues in the LevelDB store (depth, messages sent and not acknowledged, the
 * oldest one), refused while Midge runs (the queue is locked), and `--drop NAME` empties one.
 */
import { test, expect } from 'vitest'
import { connect } from '../helpers/mqtt.js'
import { tempDir } from '../helpers/start-broker.js'
import { freePort, runMidge, spawnMidge, writeConf } from '../helpers/processes.js'

test('midge store bridges shows a queue and drops it', { timeout: 60_000 }, async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-bridge-store-')
  onTestFinished(remove)
  // nothing listens there: the bridge keeps everything queued
  const port = await freePort()
  const conf = await writeConf(dir, [
    'listener 0 127.0.0.1', 'allow_anonymous true', 'persistence true', `persistence_location ${dir}/`,
    'connection cloud', `address 127.0.0.1:${port}`, 'restart_timeout 30', 'topic up/# out 1'
  ].join('\n'))
  const midge = await spawnMidge(conf, dir)
  onTestFinished(async () => { await midge.kill('SIGKILL') })
  const before = Date.now()
  const pub = await connect(midge.url(), { clientId: 'pub' })
  for (const t of ['a', 'b', 'c']) await pub.publishAsync(`up/${t}`, t, { qos: 1 })
  await pub.endAsync()

  const locked = await runMidge(['store', 'bridges', '-c', conf], dir)
  expect(locked.code).toBe(1)
  expect(locked.output).toContain(`Error: the queue of bridge cloud (${dir}/bridges/cloud) is locked: stop the Midge using it first.`)
  await midge.stop()

  const shown = await runMidge(['store', 'bridges', '-c', conf], dir)
  expect(shown.code).toBe(0)
  const lines = shown.output.trim().split('\n')
  expect(lines[0]).toBe(`Bridge queues (${dir}/bridges):`)
  const m = /^ {2}cloud: 3 message\(s\), 0 sent and not yet acknowledged; oldest queued (\S+) \((\d+) s ago\) for up\/a$/.exec(lines[1]!)
  expect(m, lines[1]).not.toBeNull()
  const oldest = Date.parse(m![1]!)
  expect(oldest).toBeGreaterThanOrEqual(before)
  expect(oldest).toBeLessThanOrEqual(Date.now())
  expect(lines).toHaveLength(2)

  const unknown = await runMidge(['store', 'bridges', '-c', conf, '--drop', 'nope'], dir)
  expect(unknown.code).toBe(2)
  expect(unknown.output).toContain(`Error: there is no bridge queue named nope in ${dir}/bridges.`)
  const dropped = await runMidge(['store', 'bridges', '-c', conf, '--drop', 'cloud'], dir)
  expect(dropped.code).toBe(0)
  expect(dropped.output.trim().split('\n')).toEqual([`Bridge queues (${dir}/bridges):`, '  cloud: 3 message(s) dropped.'])
  const after = await runMidge(['store', 'bridges', '-c', conf], dir)
  expect(after.output.trim().split('\n')).toEqual([`Bridge queues (${dir}/bridges):`, '  cloud: empty'])

  const again = await spawnMidge(conf, dir)
  onTestFinished(async () => { await again.kill('SIGKILL') })
  expect(again.output()).not.toMatch(/from the last run are queued/)
})
