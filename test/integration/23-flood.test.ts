/**
 * Flood regression: bare aedes 1.2.0 died with `RangeError: Maximum call stack size exceeded` in
 * mqemitter under a QoS 0 flood from 20 publishers into one wildcard subscriber. Here 200 publishers flood one
 * wildcard subscriber at each QoS for a bounded time (MIDGE_FLOOD_SECONDS, default 3 per QoS) against the built
 * daemon in a child process; afterwards it must still be running, have logged no uncaught error, and serve a
 * well-behaved client. Run against a build with aedes' own mqemitter (MIDGE_CHILD_MAIN=<that build>/dist/main.js)
 * this test fails with `RangeError: Maximum call stack size exceeded` in mqemitter, as the flood's backlog drains.
 */
import { test, expect } from 'vitest'
import net from 'node:net'
import { once } from 'node:events'
import mqttPacket from 'mqtt-packet'
import mqtt from 'mqtt'
import { startChildBroker, crashLines, type ChildBroker } from '../helpers/processes.js'

const SECONDS = Number(process.env.MIDGE_FLOOD_SECONDS ?? 3)
const PUBLISHERS = 200
const gen = (p: Record<string, unknown>) => mqttPacket.generate(p as unknown as mqttPacket.Packet)
const connectPacket = (clientId: string) => gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 60 })

/** A raw client that acknowledges what it must (PUBACK, PUBREC/PUBREL/PUBCOMP) and counts PUBLISHes. */
function rawClient (port: number, clientId: string, onPublish?: () => void): Promise<{ socket: net.Socket, closed: Promise<void> }> {
  const socket = net.connect(port, '127.0.0.1')
  // resolves on close even after an error (events.once would reject on the error)
  const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
  return new Promise((resolve, reject) => {
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    socket.on('error', () => {})
    socket.once('connect', () => socket.write(connectPacket(clientId)))
    parser.on('packet', (p: mqttPacket.Packet) => {
      if (p.cmd === 'connack') {
        if (p.returnCode === 0) resolve({ socket, closed })
        else reject(new Error(`CONNACK ${p.returnCode}`))
      } else if (p.cmd === 'publish') {
        onPublish?.()
        if (p.qos === 1) socket.write(gen({ cmd: 'puback', messageId: p.messageId }))
        if (p.qos === 2) socket.write(gen({ cmd: 'pubrec', messageId: p.messageId }))
      } else if (p.cmd === 'pubrel') socket.write(gen({ cmd: 'pubcomp', messageId: p.messageId }))
      else if (p.cmd === 'pubrec') socket.write(gen({ cmd: 'pubrel', messageId: p.messageId }))
    })
    socket.on('data', d => parser.parse(d))
    socket.once('close', () => reject(new Error(`${clientId} closed before CONNACK`)))
  })
}

async function flood (b: ChildBroker, qos: 0 | 1 | 2): Promise<{ sent: number, received: number, cut: number }> {
  const port = b.ports[0]!
  let received = 0
  const sub = await rawClient(port, `flood-sub-q${qos}`, () => { received++ })
  sub.socket.write(gen({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flood/#', qos }] }))
  const pubs = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) => rawClient(port, `flood-pub-q${qos}-${i}`)))
  let cut = 0
  for (const p of pubs) void p.closed.then(() => { cut++ })
  let sent = 0
  const deadline = Date.now() + SECONDS * 1000
  await Promise.all(pubs.map(async ({ socket, closed }, i) => {
    let id = 0
    const topic = `flood/${i % 10}/p${i}`
    while (Date.now() < deadline && !socket.destroyed) {
      const batch: Buffer[] = []
      for (let k = 0; k < 20; k++) {
        id = id % 65535 + 1
        batch.push(gen({ cmd: 'publish', topic, payload: Buffer.from(`m${id}`), qos, messageId: qos > 0 ? id : undefined, retain: false, dup: false }))
      }
      sent += batch.length
      if (!socket.write(Buffer.concat(batch))) {
        await Promise.race([once(socket, 'drain').catch(() => {}), closed, new Promise(resolve => setTimeout(resolve, 200))])
      } else {
        await new Promise(resolve => setImmediate(resolve))
      }
    }
  }))
  for (const p of pubs) p.socket.destroy()
  sub.socket.destroy()
  return { sent, received, cut }
}

async function wellBehaved (b: ChildBroker): Promise<void> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.ports[0]}`, { clientId: 'after-flood', reconnectPeriod: 0, connectTimeout: 30_000 })
  try {
    await c.subscribeAsync('after/flood', { qos: 1 })
    const got = new Promise<string>(resolve => c.on('message', (_t, p) => resolve(p.toString())))
    await c.publishAsync('after/flood', 'still alive', { qos: 1 })
    expect(await got).toBe('still alive')
  } finally {
    await c.endAsync(true)
  }
}

for (const qos of [0, 1, 2] as const) {
  test(`${PUBLISHERS} publishers flooding one wildcard subscriber at QoS ${qos} for ${SECONDS} s: the broker survives and still serves`, async ({ onTestFinished }) => {
    const b = await startChildBroker('listener 0 127.0.0.1\nallow_anonymous true\nconnection_messages false\n')
    onTestFinished(async () => { await b.close() })
    const r = await flood(b, qos)
    console.log(`flood QoS ${qos}: ${r.sent} publishes offered by ${PUBLISHERS} publishers in ${SECONDS} s, ${r.received} delivered to the wildcard subscriber, ${r.cut} publishers cut off by the broker`)
    // a crash during the flood (bare aedes: RangeError in mqemitter) shows here, with its stack
    expect(b.uncaught).toEqual([])
    expect(crashLines(b.stderr())).toEqual([])
    expect(b.alive()).toBe(true)
    const tw = Date.now()
    try {
      const exited = new Promise<never>((_resolve, reject) => {
        if (!b.alive()) reject(new Error('the broker is not running'))
        b.proc.once('exit', () => reject(new Error('the broker exited')))
      })
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('no answer in 40 s')), 40_000) })
      await Promise.race([wellBehaved(b), exited, late]).finally(() => clearTimeout(timer))
    } catch (err) {
      // bare aedes crashed here, as the flood's backlog drained: name the crash, not just the client's ECONNRESET
      await Promise.race([once(b.proc, 'exit'), new Promise(resolve => setTimeout(resolve, 2000))])
      throw new Error(`the broker did not serve a client after the flood (${String(err)})` +
        (b.uncaught.length > 0 ? `; it crashed: ${b.uncaught[0]!.split('\n').slice(0, 4).join(' | ')}` : ''))
    }
    const served = Date.now() - tw
    const st = await b.stats()
    console.log(`flood QoS ${qos}: well-behaved client served ${served} ms after the flood; broker event-loop delay during the run: ` +
      `mean ${st.delayMeanMs.toFixed(0)} ms, p99 ${st.delayP99Ms.toFixed(0)} ms, max ${st.delayMaxMs.toFixed(0)} ms; heap after GC ${(st.heapUsed / 1e6).toFixed(1)} MB`)
    expect(b.alive()).toBe(true)
    expect(b.uncaught).toEqual([])
    expect(crashLines(b.stderr())).toEqual([])
    expect(r.received).toBeGreaterThan(0)
    const { code, signal } = await b.close()
    expect({ code, signal }).toEqual({ code: 0, signal: null }) // graceful SIGTERM shutdown after the flood
  }, 60_000 + SECONDS * 1000 * 4)
}
