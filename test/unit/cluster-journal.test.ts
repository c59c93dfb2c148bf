/**
 * The cluster journal's lease against a real Redis that goes away and comes back: a renewal that fails is
 * logged (another node may replay this live node's journal once the lease expires), and once renewals work
 * again the journal is registered again, so that a node that dies later is still replayed.
 */
import { test, expect, onTestFinished } from 'vitest'
import { EventEmitter } from 'node:events'
import pino from 'pino'
import { RedisJournal } from '../../src/cluster/journal.js'
import { connectRedis } from '../../src/cluster/redis.js'
import { startRedis } from '../helpers/redis.js'

/** A logger whose lines are kept and announced (no polling for a log line). */
function capture (): { log: pino.Logger, lines: Array<{ level: number, msg: string }>, events: EventEmitter } {
  const lines: Array<{ level: number, msg: string }> = []
  const events = new EventEmitter()
  const log = pino({ level: 'info' }, {
    write: (s: string) => {
      const line = JSON.parse(s) as { level: number, msg: string }
      lines.push(line)
      events.emit('line', line)
    }
  })
  return { log, lines, events }
}

function nextLine (events: EventEmitter, re: RegExp): Promise<{ level: number, msg: string }> {
  return new Promise(resolve => {
    const on = (line: { level: number, msg: string }): void => { if (re.test(line.msg)) { events.off('line', on); resolve(line) } }
    events.on('line', on)
  })
}

test('a lease renewal that fails is logged once; when it works again the journal is registered again', async () => {
  const redis = await startRedis()
  onTestFinished(() => redis.close())
  const conn = await connectRedis({ redisUrl: redis.url, redisTls: false, nodeId: 'lease', source: 'test' }, 'store')
  onTestFinished(() => { conn.disconnect() })
  conn.on('error', () => {}) // the outage below is on purpose
  const { log, lines, events } = capture()
  const journal = new RedisJournal(conn, 'lease-1', log)
  await journal.start()
  onTestFinished(() => journal.close())
  expect(await redis.command('SMEMBERS', 'midge:journals')).toContain('lease-1|midge:journal:lease-1')

  const failed = nextLine(events, /could not renew this node's lease/)
  await redis.stop()
  expect((await failed).level).toBe(40)
  // Redis comes back empty (no dump): the registration is gone with it, as after another node's claim
  const renewed = nextLine(events, /lease renewed again/)
  await redis.start()
  await renewed
  expect(lines.filter(l => /could not renew/.test(l.msg))).toHaveLength(1)
  expect(await redis.command('SMEMBERS', 'midge:journals')).toContain('lease-1|midge:journal:lease-1')
  expect(await redis.command('EXISTS', 'midge:alive:lease-1')).toBe(':1\r\n')
}, 30_000)
