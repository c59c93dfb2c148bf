import { test, expect } from 'vitest'
import { LoginThrottle, addressKey } from '../../src/auth/throttle.js'

function clock () {
  let t = 1_000_000
  return { now: () => t, advance: (ms: number) => { t += ms } }
}

test('free failures, then doubling delays capped at maxMs; success clears', () => {
  const c = clock()
  const th = new LoginThrottle({ freeFailures: 3, baseMs: 500, maxMs: 8000, now: c.now })
  expect([0, 1, 2, 3, 4, 5, 6, 7, 9].map(n => th.delayFor(n))).toEqual([0, 0, 0, 500, 1000, 2000, 4000, 8000, 8000])
  for (let i = 0; i < 3; i++) { expect(th.reserve('a')).toEqual({ wait: 0 }); th.failure('a') }
  expect(th.reserve('a')).toEqual({ wait: 500 })
  c.advance(500); th.failure('a')
  expect(th.reserve('a')).toEqual({ wait: 1000 })
  expect(th.reserve('b')).toEqual({ wait: 0 }) // per address
  c.advance(1000); th.success('a')
  expect(th.reserve('a')).toEqual({ wait: 0 })
})

test('waiting attempts count: parallel attempts get spaced slots, beyond maxMs refused', () => {
  const c = clock()
  const th = new LoginThrottle({ freeFailures: 3, baseMs: 500, maxMs: 8000, now: c.now })
  for (let i = 0; i < 3; i++) th.failure('a')
  const v = Array.from({ length: 7 }, () => th.reserve('a'))
  expect(v).toEqual([{ wait: 500 }, { wait: 1000 }, { wait: 2000 }, { wait: 4000 }, { wait: 8000 }, { refuse: true }, { refuse: true }])
})

test('parallel first attempts from a fresh address (devices behind one NAT) are not slowed; after a failure a burst is spaced', () => {
  const c = clock()
  const th = new LoginThrottle({ freeFailures: 3, baseMs: 500, maxMs: 8000, now: c.now })
  expect(Array.from({ length: 50 }, () => th.reserve('nat')).every(v => 'wait' in v && v.wait === 0)).toBe(true)
  for (let i = 0; i < 50; i++) th.success('nat')
  th.reserve('x'); th.failure('x') // one failure: from now on attempts being checked count
  const waits = Array.from({ length: 9 }, () => th.reserve('x'))
  expect(waits).toEqual([{ wait: 0 }, { wait: 0 }, { wait: 0 }, { wait: 500 }, { wait: 1500 }, { wait: 3500 }, { wait: 7500 }, { refuse: true }, { refuse: true }])
})

test('an address quiet for forgetMs is forgotten; the table is bounded', () => {
  const c = clock()
  const th = new LoginThrottle({ freeFailures: 0, forgetMs: 60_000, maxEntries: 3, now: c.now })
  th.failure('a')
  expect(th.reserve('a')).toMatchObject({ wait: expect.any(Number) })
  c.advance(60_001)
  expect(th.reserve('a')).toEqual({ wait: 0 })
  for (const x of ['b', 'c', 'd', 'e']) th.failure(x)
  expect(th.size).toBe(3)
})

test.each([
  ['127.0.0.1', '127.0.0.1'],
  ['::ffff:192.168.1.9', '192.168.1.9'],
  ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
  ['2001:db8:1:2::7', '2001:db8:1:2::/64'],
  ['2001:db8::1', '2001:db8:0:0::/64'],
  ['::1', '0:0:0:0::/64'],
  ['fe80::1%eth0', 'fe80:0:0:0::/64']
])('throttling key of %s is %s', (addr, key) => {
  expect(addressKey(addr)).toBe(key)
})
