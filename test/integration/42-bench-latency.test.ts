/**
 * The bench's latency rows (src/bench/scenarios.ts) against a real Midge: the steady window is measured after the
 * warm-up, and the cold window inside it, each on its own. Counts only; the figures themselves are the bench's.
 */
import { test, expect } from 'vitest'

// the built bench (`npm test` builds first): its workers and the broker it starts are files next to it in dist/
const dist = new URL('../../dist/bench/', import.meta.url)
const { allScenarios, QUICK } = await import(new URL('scenarios.js', dist).href) as typeof import('../../src/bench/scenarios.js')
const { startBroker } = await import(new URL('brokers.js', dist).href) as typeof import('../../src/bench/brokers.js')

test('a latency row measures a cold window inside the warm-up and a steady one after it, each from its own mark', async ({ onTestFinished }) => {
  const broker = await startBroker('midge', { persistence: false, ws: false })
  onTestFinished(() => broker.stop())
  const s = allScenarios().find(x => x.name === 'latency-q0-1000')!
  expect(s.derived?.map(d => [d.name, d.extra])).toEqual([['latency-q0-1000-p50', 'p50ms'], ['latency-q0-1000-cold', 'coldP99ms']])
  // 1,000 msg/s: the cold window is 200-600 ms after the load starts, the steady one 1,000-1,400 ms
  const m = await s.run({ broker, timing: { ...QUICK, latencyColdAtMs: 200, latencyMs: 400, latencyWarmMs: 1000 } })
  // about 400 each; a window that did not start at its own mark would hold 800 or more (the two windows and the gap)
  for (const n of [m.extra.samples!, m.extra.coldSamples!]) {
    expect(n).toBeGreaterThan(100)
    expect(n).toBeLessThan(700)
  }
  expect(m.value).toBeGreaterThan(0)
  expect(m.extra.coldP99ms).toBeGreaterThan(0)
  expect(m.extra.p50ms).toBeLessThanOrEqual(m.value)
})
