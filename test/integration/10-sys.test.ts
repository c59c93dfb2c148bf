/**
 * $SYS/broker/... as mosquitto 2.0.11 publishes it (names captured from Debian's mosquitto with sys_interval 1),
 * with values checked against what the test did.
 */
import { test, expect } from 'vitest'
import net from 'node:net'
import { once } from 'node:events'
import mqtt from 'mqtt'
import mqttPacket, { type Packet, type IPublishPacket } from 'mqtt-packet'
import { startTestBroker } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { VERSION } from '../../src/version.js'

const CONF = 'listener 0 127.0.0.1\nallow_anonymous true\nsys_interval 1\n'

/** Every topic mosquitto 2.0.11 published under $SYS/broker/ (captured with mosquitto_sub -t '$SYS/#' -v). */
const MOSQUITTO_TOPICS = [
  'bytes/received', 'bytes/sent', 'clients/active', 'clients/connected', 'clients/disconnected', 'clients/expired',
  'clients/inactive', 'clients/maximum', 'clients/total', 'heap/current', 'heap/maximum',
  ...['bytes/received', 'bytes/sent', 'connections', 'messages/received', 'messages/sent', 'publish/dropped',
    'publish/received', 'publish/sent', 'sockets'].flatMap(n => ['1min', '5min', '15min'].map(w => `load/${n}/${w}`)),
  'messages/received', 'messages/sent', 'messages/stored', 'publish/bytes/received', 'publish/bytes/sent',
  'publish/messages/dropped', 'publish/messages/received', 'publish/messages/sent', 'retained messages/count',
  'shared_subscriptions/count', 'store/messages/bytes', 'store/messages/count', 'subscriptions/count', 'uptime', 'version'
].map(t => `$SYS/broker/${t}`).sort()

/** The values of one complete interval, and what the broker had sent the observer before that interval began. */
interface Tick { values: Map<string, string>, before: { packets: number, bytes: number } }

/**
 * A raw QoS 0 subscriber to `$SYS/broker/#`. Each interval starts with `uptime` (it always changes), so when an
 * uptime message arrives every value of the previous interval has arrived (one connection delivers in order).
 */
class SysObserver {
  readonly values = new Map<string, string>()
  private before = { packets: 0, bytes: 0 }
  /** `before` of the interval that completed last (set when the next one begins). */
  lastBefore = { packets: 0, bytes: 0 }
  private packets = 0
  private bytes = 0
  private waiters: Array<{ check: () => boolean, resolve: () => void }> = []
  private tickWaiters: Array<(t: Tick) => void> = []
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 })

  private constructor (readonly socket: net.Socket) {
    this.parser.on('packet', (p: Packet) => {
      if (p.cmd === 'publish') {
        const pub = p as IPublishPacket
        if (pub.topic === '$SYS/broker/uptime') {
          const done: Tick = { values: new Map(this.values), before: this.before }
          this.lastBefore = this.before
          this.before = { packets: this.packets, bytes: this.bytes }
          const ws = this.tickWaiters
          this.tickWaiters = []
          for (const w of ws) w(done)
        }
        this.values.set(pub.topic, pub.payload.toString())
      }
      this.packets++
      this.bytes += mqttPacket.generate(p).length
      this.waiters = this.waiters.filter(w => { if (w.check()) { w.resolve(); return false } return true })
    })
    socket.on('data', (d: Buffer) => this.parser.parse(d))
  }

  static async connect (port: number): Promise<SysObserver> {
    const socket = net.connect(port, '127.0.0.1')
    await once(socket, 'connect')
    const o = new SysObserver(socket)
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'sys-observer', keepalive: 0 }))
    socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$SYS/broker/#', qos: 0 }] }))
    return o
  }

  get (suffix: string): string | undefined { return this.values.get(`$SYS/broker/${suffix}`) }

  /** Resolves once `check` holds after some packet (or now). */
  until (check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    if (check()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}; have ${JSON.stringify(Object.fromEntries(this.values))}`)), timeoutMs)
      this.waiters.push({ check, resolve: () => { clearTimeout(t); resolve() } })
    })
  }

  /** Resolves when `$SYS/broker/<suffix>` says `value`. */
  waitFor (suffix: string, value: string, timeoutMs?: number): Promise<void> {
    return this.until(() => this.get(suffix) === value, `${suffix} = ${value}`, timeoutMs)
  }

  /** The next complete interval. */
  nextTick (timeoutMs = 10_000): Promise<Tick> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('timed out waiting for an interval')), timeoutMs)
      this.tickWaiters.push(tick => { clearTimeout(t); resolve(tick) })
    })
  }

  /** The first complete interval for which `check` holds. */
  async tickWhere (check: (v: (suffix: string) => string | undefined) => boolean, timeoutMs = 15_000): Promise<Tick> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const t = await this.nextTick(Math.max(deadline - Date.now(), 1))
      if (check(s => t.values.get(`$SYS/broker/${s}`))) return t
    }
  }

  end (): void { this.socket.destroy() }
}

test.concurrent('$SYS/broker/ has mosquitto 2.0.11\'s topics, retained at QoS 2, with its value formats', async ({ onTestFinished }) => {
  // the first interval is published at start; the next one is a minute away, so what the reader gets below are
  // the retained copies, not live updates
  const b = await startTestBroker(CONF.replace('sys_interval 1', 'sys_interval 60'))
  onTestFinished(() => b.close())
  const first = await SysObserver.connect(b.port())
  await first.until(() => first.values.size === MOSQUITTO_TOPICS.length, 'every topic')
  first.end()
  const c = await mqtt.connectAsync(b.url(), { reconnectPeriod: 0, clientId: 'sys-reader' })
  onTestFinished(() => c.endAsync(true))
  const got = new Map<string, { payload: string, qos: number, retain: boolean }>()
  const all = new Promise<void>(resolve => c.on('message', (topic, payload, packet) => {
    got.set(topic, { payload: payload.toString(), qos: packet.qos, retain: packet.retain })
    if (got.size === MOSQUITTO_TOPICS.length) resolve()
  }))
  await c.subscribeAsync('$SYS/#', { qos: 2 })
  await all
  expect([...got.keys()].sort()).toEqual(MOSQUITTO_TOPICS)
  for (const [topic, m] of got) {
    expect([topic, m.qos, m.retain]).toEqual([topic, 2, true])
    if (topic.includes('/load/')) expect(m.payload).toMatch(/^\d+\.\d\d$/)
    else if (topic.endsWith('/uptime')) expect(m.payload).toMatch(/^\d+ seconds$/)
    else if (topic.endsWith('/version')) expect(m.payload).toBe(`midge version ${VERSION}`)
    else expect(m.payload).toMatch(/^\d+$/)
  }
})

test.concurrent('clients/connected, clients/maximum and clients/total follow what clients do', async ({ onTestFinished }) => {
  const b = await startTestBroker(CONF)
  onTestFinished(() => b.close())
  const o = await SysObserver.connect(b.port())
  onTestFinished(() => o.end())
  await o.waitFor('clients/connected', '1') // the observer itself, as mosquitto counts it
  const clients = await Promise.all([1, 2, 3].map(i => mqtt.connectAsync(b.url(), { reconnectPeriod: 0, clientId: `c${i}` })))
  await o.waitFor('clients/connected', '4')
  expect(o.get('clients/active')).toBe('4')
  expect(o.get('clients/maximum')).toBe('4')
  await Promise.all(clients.map(c => c.endAsync()))
  await o.waitFor('clients/connected', '1')
  expect(o.get('clients/maximum')).toBe('4')
  expect(o.get('clients/total')).toBe('1')
  // a persistent session with a subscription counts as disconnected once its client has gone
  const p = await mqtt.connectAsync(b.url(), { reconnectPeriod: 0, clientId: 'persistent', clean: false })
  await p.subscribeAsync('keep/me', { qos: 1 })
  await o.waitFor('clients/connected', '2')
  await o.waitFor('subscriptions/count', '2')
  await p.endAsync()
  await o.tickWhere(v => v('clients/disconnected') === '1')
  expect(o.get('clients/inactive')).toBe('1')
  // its subscription still counts, as in mosquitto: the observer's and the offline session's
  expect(o.get('subscriptions/count')).toBe('2')
  await o.waitFor('clients/total', '2')
})

test.concurrent('publishing N messages moves the publish and packet counters by exactly N', async ({ onTestFinished }) => {
  const b = await startTestBroker(CONF)
  onTestFinished(() => b.close())
  const o = await SysObserver.connect(b.port())
  onTestFinished(() => o.end())
  await o.waitFor('clients/connected', '1')
  const sub = await RawClient.connect(b.port())
  onTestFinished(() => sub.end())
  await sub.connectMqtt({ clientId: 'sub', keepalive: 0 })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'data/#', qos: 0 }] })
  await sub.next('suback')
  const pub = await RawClient.connect(b.port())
  await pub.connectMqtt({ clientId: 'pub', keepalive: 0 })
  const N = 7
  const payload = Buffer.alloc(100, 0x61)
  for (let i = 0; i < N; i++) pub.send({ cmd: 'publish', topic: `data/${i}`, payload, qos: 0, retain: false })
  pub.send({ cmd: 'disconnect' })
  await pub.closed
  for (let i = 0; i < N; i++) expect((await sub.next('publish')).cmd).toBe('publish')

  // wait for an interval that saw all of it (pub's DISCONNECT handled), then check the one after: nothing else
  // happens meanwhile except $SYS deliveries to the observer, whose packets and bytes the observer counts
  await o.tickWhere(v => v('publish/messages/received') === String(N) && v('clients/connected') === '2')
  // on a loaded machine a $SYS delivery of the previous interval may still be on its way when an interval's
  // snapshot is taken, putting messages/sent one behind what the observer saw: take the first interval that is
  // exactly right (a wrong counter never is; the wait then times out showing the values)
  const t = await o.tickWhere(v => v('messages/sent') === String(2 + N + 1 + o.lastBefore.packets))
  const v = (s: string): string | undefined => t.values.get(`$SYS/broker/${s}`)
  expect(v('publish/messages/received')).toBe(String(N))
  expect(v('publish/bytes/received')).toBe(String(N * 100))
  expect(v('publish/messages/dropped')).toBe('0')
  // the observer's packets before the interval are CONNACK, SUBACK and $SYS publishes
  expect(v('publish/messages/sent')).toBe(String(N + t.before.packets - 2))
  // every packet received: observer CONNECT + SUBSCRIBE, sub CONNECT + SUBSCRIBE, pub CONNECT + N PUBLISH + DISCONNECT
  expect(v('messages/received')).toBe(String(2 + 2 + N + 2))
  // every packet sent: sub CONNACK + SUBACK + N PUBLISH, pub CONNACK, and the observer's
  expect(v('messages/sent')).toBe(String(2 + N + 1 + t.before.packets))
  // bytes on the wire, as the clients' own sockets counted them
  expect(v('bytes/received')).toBe(String(o.socket.bytesWritten + sub.socket.bytesWritten + pub.socket.bytesWritten))
  expect(v('bytes/sent')).toBe(String(t.before.bytes + sub.socket.bytesRead + pub.socket.bytesRead))
  expect(Number(v('publish/bytes/sent'))).toBeGreaterThan(N * 100) // plus the observer's $SYS payloads
  expect(v('load/connections/1min')).not.toBe('0.00')
})

test.concurrent('a publish to $SYS is acknowledged, dropped and counted in publish/messages/dropped', async ({ onTestFinished }) => {
  const b = await startTestBroker(CONF)
  onTestFinished(() => b.close())
  const o = await SysObserver.connect(b.port())
  onTestFinished(() => o.end())
  await o.waitFor('publish/messages/dropped', '0')
  const c = await mqtt.connectAsync(b.url(), { reconnectPeriod: 0, clientId: 'faker' })
  onTestFinished(() => c.endAsync(true))
  await c.publishAsync('$SYS/broker/version', 'fake', { qos: 1, retain: true })
  await o.waitFor('publish/messages/dropped', '1')
  expect(o.get('version')).toBe(`midge version ${VERSION}`)
})

test.concurrent('retained messages/count and store counters follow retained publishes', async ({ onTestFinished }) => {
  const b = await startTestBroker(CONF)
  onTestFinished(() => b.close())
  const o = await SysObserver.connect(b.port())
  onTestFinished(() => o.end())
  await o.until(() => o.get('retained messages/count') !== undefined, 'retained count')
  // the $SYS values are retained too (as in mosquitto): wait for the count to settle at that number
  await o.waitFor('retained messages/count', String(MOSQUITTO_TOPICS.length))
  const c = await mqtt.connectAsync(b.url(), { reconnectPeriod: 0, clientId: 'retainer' })
  onTestFinished(() => c.endAsync(true))
  for (let i = 0; i < 3; i++) await c.publishAsync(`r/${i}`, 'x'.repeat(10), { qos: 1, retain: true })
  await o.waitFor('retained messages/count', String(MOSQUITTO_TOPICS.length + 3))
  expect(o.get('store/messages/count')).toBe(String(MOSQUITTO_TOPICS.length + 3))
  await c.publishAsync('r/0', '', { qos: 1, retain: true })
  await o.waitFor('retained messages/count', String(MOSQUITTO_TOPICS.length + 2))
})

test.concurrent('aedes\' own $SYS/<id>/... topics and retained $SYS messages never reach a # subscriber [MQTT-4.7.2-1]', async ({ onTestFinished }) => {
  const b = await startTestBroker(CONF)
  onTestFinished(() => b.close())
  const o = await SysObserver.connect(b.port())
  onTestFinished(() => o.end())
  await o.nextTick() // retained $SYS values now exist
  const all = await RawClient.connect(b.port())
  onTestFinished(() => all.end())
  await all.connectMqtt({ clientId: 'hash' })
  all.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 0 }, { topic: '+/broker/uptime', qos: 0 }] })
  await all.next('suback')
  // aedes publishes $SYS/<id>/new/clients on every connect and $SYS/<id>/new/subscribes on every subscribe
  const dollar = await RawClient.connect(b.port())
  onTestFinished(() => dollar.end())
  await dollar.connectMqtt({ clientId: 'dollar' })
  dollar.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$SYS/#', qos: 0 }] })
  await dollar.next('suback')
  const other = await mqtt.connectAsync(b.url(), { reconnectPeriod: 0, clientId: 'other' })
  await other.subscribeAsync('x', { qos: 0 })
  await other.unsubscribeAsync('x')
  await other.publishAsync('plain/topic', 'p', { qos: 1 })
  await other.endAsync()
  await all.next('publish').then(p => expect((p as IPublishPacket).topic).toBe('plain/topic'))
  await all.ping()
  expect(all.packets.filter(p => p.cmd === 'publish')).toEqual([])
  // the $SYS/# subscriber gets mosquitto's tree, never aedes' broker-id topics
  const firstSys = await dollar.next('publish') as IPublishPacket
  await dollar.ping()
  const topics = [firstSys, ...dollar.packets.filter(p => p.cmd === 'publish')].map(p => (p as IPublishPacket).topic)
  expect(topics.length).toBeGreaterThan(0)
  for (const t of topics) expect(t.startsWith('$SYS/broker/')).toBe(true)
})

test.concurrent('sys_interval 0 publishes nothing under $SYS', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nsys_interval 0\n')
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  onTestFinished(() => c.end())
  await c.connectMqtt({ clientId: 'nothing' })
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$SYS/#', qos: 0 }] })
  await c.next('suback')
  await c.ping()
  expect(c.packets.filter(p => p.cmd === 'publish')).toEqual([])
})
