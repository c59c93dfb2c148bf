import { test, expect } from 'vitest'
import { ConnectionRateLimiter, topicTooLong } from '../../src/broker/limits.js'

test('ConnectionRateLimiter admits N per second per address, flags the first refusal, and forgets at the next second', () => {
  let now = 5_000
  const r = new ConnectionRateLimiter(2, 100, () => now)
  expect([r.admit('a'), r.admit('a'), r.admit('a'), r.admit('a')]).toEqual([{ ok: true }, { ok: true }, { ok: false, first: true }, { ok: false, first: false }])
  expect(r.admit('b')).toEqual({ ok: true })
  now = 5_999
  expect(r.admit('a')).toEqual({ ok: false, first: false })
  now = 6_000
  expect(r.admit('a')).toEqual({ ok: true })
  expect(r.size).toBe(1)
})

test('ConnectionRateLimiter memory is bounded: at most maxAddresses per second, then new addresses are refused', () => {
  let now = 0
  const r = new ConnectionRateLimiter(10, 1000, () => now)
  for (let i = 0; i < 1000; i++) expect(r.admit(`10.0.${i >> 8}.${i & 255}`).ok).toBe(true)
  expect(r.admit('192.0.2.1')).toEqual({ ok: false, first: false })
  expect(r.admit('10.0.0.0').ok).toBe(true) // known addresses keep their allowance
  expect(r.size).toBe(1000)
  now = 1000
  expect(r.admit('192.0.2.1').ok).toBe(true)
  expect(r.size).toBe(1)
})

test('ConnectionRateLimiter with 0 admits everything and tracks nothing', () => {
  const r = new ConnectionRateLimiter(0)
  for (let i = 0; i < 100; i++) expect(r.admit('a').ok).toBe(true)
  expect(r.size).toBe(0)
})

test('topicTooLong counts UTF-8 bytes; 0 means no limit', () => {
  expect(topicTooLong('a'.repeat(10), 10)).toBe(false)
  expect(topicTooLong('a'.repeat(11), 10)).toBe(true)
  expect(topicTooLong('é'.repeat(5), 10)).toBe(false)
  expect(topicTooLong('é'.repeat(6), 10)).toBe(true)
  expect(topicTooLong('€'.repeat(4), 10)).toBe(true) // 12 bytes
  expect(topicTooLong('😀'.repeat(2), 8)).toBe(false) // 8 bytes, 4 UTF-16 units
  expect(topicTooLong('😀'.repeat(3), 8)).toBe(true)
  expect(topicTooLong('x'.repeat(70_000), 0)).toBe(false)
})
