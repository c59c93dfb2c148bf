/** The one `$`-topic policy function: the same answers the publish, will, subscribe and delivery paths rely on. */
import { test, expect } from 'vitest'
import { dollarAllowed, reservedForPublish, reservedForSubscribe, isAedesBookkeeping, type DollarUse } from '../../src/mqtt/reserved-topics.js'

const TOPICS = ['a/b', '$SYS/broker/uptime', '$SYS/x', '$SYS/abc/heartbeat', '$SYS/broker/heartbeat', '$MIDGE', '$MIDGE/dropped',
  '$MIDGE/share/g/t', '$MIDGEx', '$SYSTEM/x', '$SYS', '$share/g/t', 'x/$SYS/y', '#', '$']

test.each<[DollarUse, (t: string) => boolean]>([
  ['publish', t => !reservedForPublish(t)],
  ['will', t => !reservedForPublish(t)],
  ['subscribe', t => !reservedForSubscribe(t)],
  ['deliver', t => !isAedesBookkeeping(t)]
])('%s: as the module\'s rules say', (use, rule) => {
  expect(TOPICS.map(t => dollarAllowed(use, t))).toEqual(TOPICS.map(rule))
})

test('a topic without a leading $ is always allowed', () => {
  for (const use of ['publish', 'will', 'subscribe', 'deliver'] as const) expect(dollarAllowed(use, 'x/$MIDGE/y')).toBe(true)
})

test('clients may read $SYS but not write it; $MIDGE is closed both ways', () => {
  expect([dollarAllowed('subscribe', '$SYS/#'), dollarAllowed('publish', '$SYS/broker/x'), dollarAllowed('will', '$SYS/w')]).toEqual([true, false, false])
  expect([dollarAllowed('subscribe', '$MIDGE/#'), dollarAllowed('publish', '$MIDGE/x')]).toEqual([false, false])
  expect([dollarAllowed('deliver', '$SYS/node-1/new/clients'), dollarAllowed('deliver', '$SYS/broker/clients/connected')]).toEqual([false, true])
})
