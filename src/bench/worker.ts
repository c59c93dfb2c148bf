/**
 * Load-generator worker process (forked by run.ts). Opens raw MQTT connections (tcp, tls, ws, wss), publishes
 * from pre-encoded packets and counts what arrives with a header scanner, so that one worker spends far less CPU
 * per message than the broker it drives. Commands and answers travel over the IPC channel (protocol.ts).
 */
import net from 'node:net'
import tls from 'node:tls'
import type { Duplex } from 'node:stream'
import { WebSocket, createWebSocketStream } from 'ws'
import * as wire from './wire.js'
import type { ToWorker, FromWorker, TransportSpec, GroupSpec, Collected } from './protocol.js'

/** flood: messages per write; the socket's backpressure (and the kernel's buffers) are the only limit. */
const FLOOD_BATCH = 64
/**
 * paced (QoS 0): batches of PACED_BATCH messages, each followed by a PINGREQ; at most PACED_WINDOW batches
 * unanswered. A pure flood parks megabytes per connection in loopback socket buffers: at 200 publishers the
 * kernel hits TCP memory pressure and every broker, mosquitto included, collapses, which measures the kernel.
 */
const PACED_BATCH = 64
const PACED_WINDOW = 3
/** MQTT packet identifiers are 1..65535. */
const MAX_PACKET_ID = 65_535
/** How long close() waits for the broker to close a connection after DISCONNECT before destroying it. */
const CLOSE_GRACE_MS = 1_000
/** A broker that stops acknowledging retained publishes must not hang the bench. */
const RETAINED_LOAD_TIMEOUT_MS = 60_000

const send = (m: FromWorker): void => { process.send?.(m) }

function openStream (t: TransportSpec): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    if (t.kind === 'tcp' || t.kind === 'tls') {
      const s = t.kind === 'tcp'
        ? net.connect({ host: t.host, port: t.port })
        : tls.connect({ host: t.host, port: t.port, ca: t.ca, servername: 'localhost' })
      s.setNoDelay(true)
      s.once(t.kind === 'tcp' ? 'connect' : 'secureConnect', () => { s.removeListener('error', reject); resolve(s) })
      s.once('error', reject)
      return
    }
    const url = `${t.kind}://${t.host}:${t.port}/mqtt`
    const ws = new WebSocket(url, 'mqtt', { ca: t.ca, perMessageDeflate: false })
    ws.once('open', () => {
      ws.removeListener('error', reject)
      ;(ws as unknown as { _socket?: net.Socket })._socket?.setNoDelay(true)
      resolve(createWebSocketStream(ws))
    })
    ws.once('error', reject)
  })
}

/** Totals of this worker since the last `mark`. */
const totals = { sent: 0, received: 0, lost: 0 }
let latencies: number[] = []
let markTime = process.hrtime.bigint()
let markCpu = process.cpuUsage()
let publishing = false
const clients: Client[] = []

class Client {
  stream!: Duplex
  private waiters = new Map<number, Array<() => void>>()
  private acks: Buffer[] = []
  /** pub window mode: completions seen in the current chunk. */
  private completed = 0
  /** pub paced mode: PINGRESPs seen in the current chunk (each one answers a batch). */
  private pacedAnswered = 0
  private nextId = 1
  private template: wire.PublishTemplate | undefined
  private floodBatch: Buffer | undefined
  private timer: NodeJS.Timeout | undefined
  closing = false

  constructor (readonly id: string, readonly group: GroupSpec, readonly index: number) {}

  async open (t: TransportSpec): Promise<void> {
    this.stream = await openStream(t)
    const scanner = new wire.Scanner((type, flags, buf, start, end) => this.onPacket(type, flags, buf, start, end))
    this.stream.on('data', (chunk: Buffer) => {
      scanner.push(chunk)
      this.afterChunk()
    })
    // a broken connection also emits 'close', which counts it as lost
    this.stream.on('error', () => {})
    this.stream.on('close', () => { if (!this.closing) totals.lost++ })
    const g = this.group
    const connack = this.wait(wire.CONNACK)
    this.stream.write(wire.connect(this.id, { clean: g.clean, keepalive: 0, version: g.protocolVersion ?? 4 }))
    await connack
    if (g.kind === 'sub') {
      const suback = this.wait(wire.SUBACK)
      this.stream.write(wire.subscribe(1, [{ topic: g.filter ?? '#', qos: g.qos ?? 0 }], g.protocolVersion ?? 4))
      await suback
    }
    if (g.kind === 'pub') {
      const payload = Buffer.alloc(g.payloadBytes ?? 64, 0x61)
      const topic = (g.topic ?? 'bench/{i}').replace('{i}', String(this.index))
      this.template = wire.publishTemplate(topic, payload, g.qos ?? 0, false, g.protocolVersion ?? 4)
      if (g.mode === 'flood') this.floodBatch = Buffer.concat(Array.from({ length: FLOOD_BATCH }, () => this.template!.buf))
      if (g.mode === 'paced') this.floodBatch = Buffer.concat([...Array.from({ length: PACED_BATCH }, () => this.template!.buf), wire.pingreq()])
    }
  }

  wait (type: number): Promise<void> {
    return new Promise(resolve => {
      const list = this.waiters.get(type) ?? []
      list.push(resolve)
      this.waiters.set(type, list)
    })
  }

  private onPacket (type: number, flags: number, buf: Buffer, start: number, end: number): void {
    if (type === wire.PUBLISH) {
      totals.received++
      const qos = (flags >> 1) & 3
      const topicLen = buf.readUInt16BE(start)
      let p = start + 2 + topicLen
      if (qos > 0) {
        const id = buf.readUInt16BE(p)
        p += 2
        this.acks.push(wire.ack(qos === 1 ? wire.PUBACK : wire.PUBREC, id))
      }
      if (this.group.protocolVersion === 5) {
        // skip the properties: a variable byte integer length, then that many bytes
        let len = 0
        let mul = 1
        let b: number
        do { b = buf[p++]!; len += (b & 0x7f) * mul; mul *= 128 } while ((b & 0x80) !== 0)
        p += len
      }
      if (this.group.latency && end - p >= 8) {
        const sentAt = buf.readBigUInt64BE(p)
        latencies.push(Number(process.hrtime.bigint() - sentAt) / 1000)
      }
      return
    }
    if (type === wire.PUBREL) { this.acks.push(wire.ack(wire.PUBCOMP, buf.readUInt16BE(start))); return }
    if (type === wire.PUBACK || type === wire.PUBCOMP) { this.completed++; return }
    if (type === wire.PINGRESP && this.group.mode === 'paced') { this.pacedAnswered++; return }
    if (type === wire.PUBREC) { this.acks.push(wire.ack(wire.PUBREL, buf.readUInt16BE(start))); return }
    const list = this.waiters.get(type)
    const w = list?.shift()
    if (w) w()
  }

  private afterChunk (): void {
    if (this.acks.length > 0) {
      const out = this.acks.length === 1 ? this.acks[0]! : Buffer.concat(this.acks)
      this.acks = []
      this.stream.write(out)
    }
    if (this.pacedAnswered > 0) {
      const n = this.pacedAnswered
      this.pacedAnswered = 0
      if (publishing && !this.closing) for (let k = 0; k < n; k++) this.sendPacedBatch()
    }
    if (this.completed > 0) {
      const n = this.completed
      this.completed = 0
      if (publishing && this.group.mode === 'window') this.sendNumbered(n, false)
    }
  }

  /** `n` PUBLISH packets with fresh message ids (and a send time in the payload when `stamp`). */
  private sendNumbered (n: number, stamp: boolean): void {
    const t = this.template!
    const len = t.buf.length
    const out = Buffer.allocUnsafe(len * n)
    const now = stamp ? process.hrtime.bigint() : 0n
    for (let k = 0; k < n; k++) {
      const o = k * len
      t.buf.copy(out, o)
      if (this.group.qos !== 0) {
        out.writeUInt16BE(this.nextId, o + t.idOffset)
        this.nextId = this.nextId === MAX_PACKET_ID ? 1 : this.nextId + 1
      }
      if (stamp) out.writeBigUInt64BE(now, o + t.payloadOffset)
    }
    totals.sent += n
    this.stream.write(out)
  }

  private sendPacedBatch (): void {
    totals.sent += PACED_BATCH
    this.stream.write(this.floodBatch!)
  }

  start (): void {
    const g = this.group
    if (g.kind !== 'pub') return
    if (g.mode === 'paced') {
      for (let k = 0; k < PACED_WINDOW; k++) this.sendPacedBatch()
    } else if (g.mode === 'flood') {
      const batch = this.floodBatch!
      // `publishing` only changes from the message handler, between pumps, so it is read once per pump.
      const pump = (): void => {
        if (!publishing) return
        let accepted = true
        while (accepted && !this.closing) {
          totals.sent += FLOOD_BATCH
          accepted = this.stream.write(batch)
        }
        if (!accepted) this.stream.once('drain', pump)
      }
      pump()
    } else if (g.mode === 'window') {
      this.sendNumbered(g.window ?? 10, false)
    } else if (g.mode === 'rate') {
      const rate = g.rate ?? 1000
      const t0 = process.hrtime.bigint()
      let sentHere = 0
      this.timer = setInterval(() => {
        if (!publishing) return
        const due = Math.floor(Number(process.hrtime.bigint() - t0) * rate / 1e9) - sentHere
        if (due > 0) { sentHere += due; this.sendNumbered(due, true) }
      }, 1)
    }
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
  }

  close (): Promise<void> {
    this.closing = true
    this.stop()
    return new Promise(resolve => {
      if (this.stream.destroyed) { resolve(); return }
      this.stream.once('close', () => resolve())
      this.stream.end(wire.disconnect())
      setTimeout(() => { this.stream.destroy(); resolve() }, CLOSE_GRACE_MS).unref()
    })
  }
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool<T> (items: T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0
  const run = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run))
}

function collect (): Collected {
  const cpu = process.cpuUsage(markCpu)
  const out: Collected = {
    sent: totals.sent,
    received: totals.received,
    lost: totals.lost,
    elapsedMs: Number(process.hrtime.bigint() - markTime) / 1e6,
    cpuMs: (cpu.user + cpu.system) / 1000
  }
  if (latencies.length > 0) out.latenciesUs = latencies
  return out
}

async function retainedLoad (t: TransportSpec, count: number, payloadBytes: number): Promise<{ ms: number, acked: number }> {
  const c = new Client('bench-retain-loader', { kind: 'idle', count: 1, idPrefix: '', clean: true }, 0)
  await c.open(t)
  const t0 = process.hrtime.bigint()
  const payload = Buffer.alloc(payloadBytes, 0x62)
  const window = 100
  let sent = 0
  let acked = 0
  await new Promise<void>(resolve => {
    const timer = setTimeout(resolve, RETAINED_LOAD_TIMEOUT_MS)
    const sendSome = (n: number): void => {
      const parts: Buffer[] = []
      for (let k = 0; k < n && sent < count; k++, sent++) {
        const p = wire.publishTemplate(`bench/retained/${sent}`, payload, 1, true)
        p.buf.writeUInt16BE((sent % MAX_PACKET_ID) + 1, p.idOffset)
        parts.push(p.buf)
      }
      if (parts.length > 0) c.stream.write(Buffer.concat(parts))
    }
    const scanner = new wire.Scanner((type) => {
      if (type !== wire.PUBACK) return
      acked++
      if (acked === count) { clearTimeout(timer); resolve() }
    })
    c.stream.removeAllListeners('data')
    c.stream.on('data', (chunk: Buffer) => {
      const before = acked
      scanner.push(chunk)
      sendSome(acked - before)
    })
    sendSome(window)
  })
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  await c.close()
  return { ms: acked === count ? ms : NaN, acked }
}

async function retainedFetch (t: TransportSpec, count: number, timeoutMs: number): Promise<{ ms: number, received: number }> {
  const c = new Client(`bench-retain-fetch-${process.pid}-${Date.now()}`, { kind: 'idle', count: 1, idPrefix: '', clean: true }, 0)
  await c.open(t)
  let received = 0
  const t0 = process.hrtime.bigint()
  let t1 = t0
  await new Promise<void>(resolve => {
    const timer = setTimeout(resolve, timeoutMs)
    const scanner = new wire.Scanner((type) => {
      if (type !== wire.PUBLISH) return
      received++
      if (received === count) { t1 = process.hrtime.bigint(); clearTimeout(timer); resolve() }
    })
    c.stream.removeAllListeners('data')
    c.stream.on('data', (chunk: Buffer) => scanner.push(chunk))
    c.stream.write(wire.subscribe(1, [{ topic: 'bench/retained/#', qos: 0 }]))
  })
  await c.close()
  return { ms: received === count ? Number(t1 - t0) / 1e6 : NaN, received }
}

async function handle (m: ToWorker): Promise<void> {
  try {
    switch (m.cmd) {
      case 'setup': {
        const t0 = process.hrtime.bigint()
        const list: Client[] = []
        for (const g of m.groups) {
          for (let i = 0; i < g.count; i++) list.push(new Client(`${g.idPrefix}${i}`, g, i))
        }
        await pool(list, m.connectConcurrency, async c => { await c.open(m.transport); clients.push(c) })
        send({ ok: true, cmd: 'setup', connectMs: Number(process.hrtime.bigint() - t0) / 1e6 })
        return
      }
      case 'start':
        publishing = true
        for (const c of clients) c.start()
        send({ ok: true, cmd: 'start' })
        return
      case 'mark':
        totals.sent = 0
        totals.received = 0
        latencies = []
        markTime = process.hrtime.bigint()
        markCpu = process.cpuUsage()
        send({ ok: true, cmd: 'mark' })
        return
      case 'collect':
        send({ ok: true, cmd: 'collect', data: collect() })
        return
      case 'stopPublishing':
        publishing = false
        for (const c of clients) c.stop()
        send({ ok: true, cmd: 'stopPublishing' })
        return
      case 'retainedLoad':
        send({ ok: true, cmd: 'retainedLoad', ...(await retainedLoad(m.transport, m.count, m.payloadBytes)) })
        return
      case 'retainedFetch':
        send({ ok: true, cmd: 'retainedFetch', ...(await retainedFetch(m.transport, m.count, m.timeoutMs)) })
        return
      case 'close':
        publishing = false
        await Promise.all(clients.map(c => c.close()))
        send({ ok: true, cmd: 'close' })
        process.disconnect?.()
    }
  } catch (err) {
    send({ ok: false, cmd: m.cmd, error: (err as Error).message })
  }
}

process.on('message', (m: ToWorker) => { void handle(m) })
process.on('disconnect', () => process.exit(0))
