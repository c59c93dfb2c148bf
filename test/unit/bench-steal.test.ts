/** The bench's CPU steal figure (src/bench/brokers.ts): read from /proc/stat, as a share of all CPU time. */
import { test, expect } from 'vitest'
import { machineTicks, stealPct } from '../../src/bench/brokers.js'

test('stealPct is the stolen share of the CPU time between two readings', () => {
  expect(stealPct({ total: 1000, steal: 10 }, { total: 1400, steal: 110 })).toBe(25)
  expect(stealPct({ total: 1000, steal: 10 }, { total: 1000, steal: 10 })).toBeUndefined()
  expect(stealPct(undefined, { total: 1, steal: 0 })).toBeUndefined()
})

test('machineTicks reads this machine\'s counters, which only grow', () => {
  const a = machineTicks()
  expect(a).toBeDefined()
  expect(a!.total).toBeGreaterThan(0)
  expect(a!.steal).toBeGreaterThanOrEqual(0)
  expect(a!.steal).toBeLessThanOrEqual(a!.total)
  let x = 0
  for (let i = 0; i < 2e7; i++) x += i
  const b = machineTicks()!
  expect(x).toBeGreaterThan(0)
  expect(b.total).toBeGreaterThanOrEqual(a!.total)
  expect(b.steal).toBeGreaterThanOrEqual(a!.steal)
})
