/**
 * Soak test: the built daemon in a child process carries mixed QoS 0/1/2 traffic for a bounded time
 * (MIDGE_SOAK_SECONDS, default 60) while clients keep connecting and dropping (clean and persistent sessions,
 * clean DISCONNECTs and abrupt drops with wills). Every 2 s the probe reports heap after GC, RSS and the
 * event-loop delay of the interval. "Flat" compares the median of the last quarter of the samples with the median of
 * the second quarter: heap after GC within +25 % + 2 MB, RSS within +25 % + 10 MB, event-loop p99 within +50 % +
 * 50 ms (slack for other test files sharing the CPU); routing keeps up (the last quarter delivers at least 30 % of
 * the second quarter's rate); and a numbered QoS 1 stream running throughout loses nothing. A leak of 1 MB/s or a
 * per-message cost that grows with uptime fails it.
 */
import { test, expect } from 'vitest'
import mqtt, { type MqttClient } from 'mqtt'
import { startChildBroker, crashLines, type ProbeStats } from '../helpers/processes.js'

const SECONDS = Number(process.env.MIDGE_SOAK_SECONDS ?? 60)
const SAMPLE_MS = 2000

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }
const tick = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))

test(`soak: ${SECONDS} s of mixed QoS traffic with connecting and dropping clients; memory and event-loop delay stay flat`, async ({ onTestFinished }) => {
  const b = await startChildBroker('listener 0 127.0.0.1\nallow_anonymous true\nconnection_messages false\n')
  onTestFinished(async () => { await b.close() })
  const url = `mqtt://127.0.0.1:${b.ports[0]}`
  const clients: MqttClient[] = []
  const open = async (clientId: string, opts: mqtt.IClientOptions = {}) => {
    const c = await mqtt.connectAsync(url, { clientId, reconnectPeriod: 0, keepalive: 30, connectTimeout: 30_000, ...opts })
    clients.push(c)
    return c
  }
  onTestFinished(async () => { await Promise.all(clients.map(c => c.endAsync(true).catch(() => {}))) })

  // steady subscribers, one per QoS on the wildcard, and the numbered QoS 1 stream
  let delivered = 0
  for (const qos of [0, 1, 2] as const) {
    const s = await open(`soak-sub-q${qos}`)
    s.on('message', () => { delivered++ })
    await s.subscribeAsync('soak/#', { qos })
  }
  const seqSub = await open('soak-seq-sub')
  const seq: number[] = []
  let seqWaiter: { n: number, resolve: () => void } | undefined
  seqSub.on('message', (_t, p) => { const n = Number(p.toString()); seq.push(n); if (seqWaiter?.n === n) seqWaiter.resolve() })
  await seqSub.subscribeAsync('seq/soak', { qos: 1 })
  const seqPub = await open('soak-seq-pub')

  const deadline = Date.now() + SECONDS * 1000
  const running = () => Date.now() < deadline
  let seqSent = 0
  const seqLoop = (async () => {
    while (running()) {
      await seqPub.publishAsync('seq/soak', String(seqSent), { qos: 1 })
      seqSent++
      await tick(20)
    }
  })()

  // steady publishers: 12 at QoS 0/1/2, ~25 msg/s each
  const pubLoops = Array.from({ length: 12 }, async (_, i) => {
    const qos = (i % 3) as 0 | 1 | 2
    const p = await open(`soak-pub-${i}`)
    while (running()) {
      await p.publishAsync(`soak/steady/${i}`, Buffer.alloc(100 + (i * 37) % 400, i), { qos })
      await tick(40)
    }
  })

  // churn: a client every ~100 ms from a pool of 30 ids; persistent sessions, wills, clean and abrupt endings
  let churned = 0
  const churnLoop = (async () => {
    let k = 0
    while (running()) {
      const id = `soak-churn-${k % 30}`
      const persistent = k % 3 === 0
      const r = k++
      const job = (async () => {
        const c = await mqtt.connectAsync(url, {
          clientId: id,
          clean: !persistent,
          reconnectPeriod: 0,
          keepalive: 30,
          connectTimeout: 30_000,
          will: { topic: `soak/will/${r % 30}`, payload: Buffer.from('gone'), qos: (r % 2) as 0 | 1, retain: r % 5 === 0 }
        })
        await c.subscribeAsync(`soak/steady/${r % 12}`, { qos: (r % 3) as 0 | 1 | 2 })
        for (let j = 0; j < 5; j++) await c.publishAsync(`soak/churn/${r % 30}`, Buffer.alloc(64, j), { qos: (j % 3) as 0 | 1 | 2 })
        await tick(50 + (r * 13) % 400)
        if (r % 2 === 0) await c.endAsync()
        else { (c as unknown as { stream: { destroy (): void } }).stream.destroy(); await c.endAsync(true) } // abrupt drop: the will fires
        churned++
      })()
      job.catch(() => {}) // a taken-over or dropped client is part of the churn
      await tick(100)
    }
  })()

  // sampling
  const samples: Array<ProbeStats & { delivered: number }> = []
  await b.stats({ resetDelay: true })
  let lastDelivered = delivered
  while (running()) {
    await tick(Math.min(SAMPLE_MS, Math.max(0, deadline - Date.now())))
    const s = await b.stats({ gc: true, resetDelay: true })
    samples.push({ ...s, delivered: delivered - lastDelivered })
    lastDelivered = delivered
  }
  await Promise.all([seqLoop, churnLoop, ...pubLoops])

  // the numbered stream lost nothing: a last message as a barrier, then compare
  const last = new Promise<void>(resolve => { seqWaiter = { n: seqSent, resolve } })
  await seqPub.publishAsync('seq/soak', String(seqSent), { qos: 1 })
  seqSent++
  await last
  expect(seq).toEqual(Array.from({ length: seqSent }, (_, i) => i))

  const q = Math.floor(samples.length / 4)
  const second = samples.slice(q, 2 * q)
  const lastQ = samples.slice(samples.length - q)
  const mb = (n: number) => (n / 1e6).toFixed(1)
  const m = (xs: typeof samples, k: 'heapUsed' | 'rss' | 'delayP99Ms' | 'delivered') => median(xs.map(s => s[k]))
  console.log(`soak: ${SECONDS} s, ${samples.length} samples, ${churned} churn connections, ${seqSent} numbered QoS 1 messages, ` +
    `${delivered} wildcard deliveries; second-quarter vs last-quarter medians: heap after GC ${mb(m(second, 'heapUsed'))} -> ${mb(m(lastQ, 'heapUsed'))} MB, ` +
    `RSS ${mb(m(second, 'rss'))} -> ${mb(m(lastQ, 'rss'))} MB, event-loop p99 ${m(second, 'delayP99Ms').toFixed(1)} -> ${m(lastQ, 'delayP99Ms').toFixed(1)} ms, ` +
    `deliveries per ${SAMPLE_MS / 1000} s ${m(second, 'delivered')} -> ${m(lastQ, 'delivered')}`)
  expect(q).toBeGreaterThanOrEqual(2)
  expect(churned).toBeGreaterThan(SECONDS * 3)
  expect(m(lastQ, 'heapUsed')).toBeLessThanOrEqual(m(second, 'heapUsed') * 1.25 + 2e6)
  expect(m(lastQ, 'rss')).toBeLessThanOrEqual(m(second, 'rss') * 1.25 + 10e6)
  expect(m(lastQ, 'delayP99Ms')).toBeLessThanOrEqual(m(second, 'delayP99Ms') * 1.5 + 50)
  expect(m(lastQ, 'delivered')).toBeGreaterThanOrEqual(m(second, 'delivered') * 0.3)
  expect(b.uncaught).toEqual([])
  expect(crashLines(b.stderr())).toEqual([])
}, 120_000 + SECONDS * 1000 * 2)
