// Preloaded into a child broker by startChildBroker in processes.ts (`node --expose-gc --import this dist/main.js`): answers
// stats requests over the IPC channel (memory after a forced GC, event-loop delay) and reports every uncaught
// exception or unhandled rejection before Node prints it and exits. Test-only: never part of the daemon.
import { monitorEventLoopDelay } from 'node:perf_hooks'

const delay = monitorEventLoopDelay({ resolution: 10 })
delay.enable()

process.on('uncaughtExceptionMonitor', (err, origin) => {
  process.send?.({ type: 'uncaught', origin, message: String(err && err.stack ? err.stack : err) })
})

process.on('message', (m) => {
  if (!m || m.type !== 'stats') return
  if (m.gc && typeof globalThis.gc === 'function') { globalThis.gc(); globalThis.gc() }
  const mu = process.memoryUsage()
  process.send?.({
    type: 'stats',
    id: m.id,
    rss: mu.rss,
    heapUsed: mu.heapUsed,
    external: mu.external,
    arrayBuffers: mu.arrayBuffers,
    delayMeanMs: delay.mean / 1e6,
    delayP99Ms: delay.percentile(99) / 1e6,
    delayMaxMs: delay.max / 1e6
  })
  if (m.resetDelay) delay.reset()
})

// the test runner went away: stop like `docker stop` would
process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'))
