/**
 * Memory per idle connection: what Midge adds to every connection is data, not functions. The listeners and
 * wrappers it puts on a connection (the packet rules, the read loop, the lingering DISCONNECT, the close listener)
 * are one function for every connection of a listener, so 10,000 idle devices hold no closure of Midge's each, and
 * no event of a socket or parser gets a third listener from Midge; a CONNECT with nothing stored reads an empty
 * array for its stored queue, not a stream; mqtt-packet builds no number table (docs/performance.md, "Fourth
 * round", "Sixth round").
 */
import { test, expect } from 'vitest'
import type { Duplex } from 'node:stream'
import { createRequire } from 'node:module'
import { startTestBroker, tempDir } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { connectedClients, clientInternals, brokerInternals, isEmptyStoredQueue } from '../../src/aedes/internals.js'

test('two idle connections share every listener function Midge puts on them', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  for (const id of ['idle-a', 'idle-b']) {
    const c = await RawClient.connect(b.port())
    onTestFinished(() => c.end())
    expect((await c.connectMqtt({ clientId: id })).returnCode).toBe(0)
  }
  const clients = connectedClients(b.broker.aedes)
  const [a, z] = [clientInternals(clients['idle-a']!), clientInternals(clients['idle-b']!)]
  const packetListeners = (c: typeof a): unknown[] => (c._parser as unknown as { listeners: (e: string) => unknown[] }).listeners('packet')
  // Midge's rules as one listener ahead of aedes' own: a third would grow the list into an array of 20 slots
  expect(packetListeners(a)).toHaveLength(2)
  expect(packetListeners(a)).toEqual(packetListeners(z))
  packetListeners(a).forEach((fn, i) => expect(fn).toBe(packetListeners(z)[i]))
  const readable = (c: typeof a): unknown[] => (c.conn as Duplex).listeners('readable')
  expect(readable(a)).toHaveLength(1)
  expect(readable(a)[0]).toBe(readable(z)[0])
  expect(a.disconnect).toBe(z.disconnect)
  // an idle client's duplicate table is aedes' own empty object until the delivery layer replaces it
  expect(Object.getPrototypeOf(a.duplicates)).toBe(Object.prototype)
  expect(Object.keys(a.duplicates)).toHaveLength(0)
})

test('an idle connection\'s socket has two listeners on close and on error; an error on it closes that connection only', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const raw: RawClient[] = []
  for (const id of ['idle-a', 'idle-b', 'idle-c']) {
    const c = await RawClient.connect(b.port())
    onTestFinished(() => c.end())
    expect((await c.connectMqtt({ clientId: id })).returnCode).toBe(0)
    raw.push(c)
  }
  const clients = connectedClients(b.broker.aedes)
  const [a, z] = [clientInternals(clients['idle-a']!), clientInternals(clients['idle-b']!)]
  // a third listener on one event would turn the list of two into an array of 20 slots (176 bytes per connection):
  // aedes has one on close and two on error, Midge one on close, shared by every connection
  const conn = (c: typeof a): Duplex => c.conn as Duplex
  expect(conn(a).listeners('close')).toHaveLength(2)
  expect(conn(a).listeners('error')).toHaveLength(2)
  expect(conn(a).listeners('close')[0]).toBe(conn(z).listeners('close')[0])
  // an error on the broker's side of one connection closes it, and the broker serves the others
  conn(a).destroy(new Error('injected socket error'))
  await raw[0]!.closed
  await raw[1]!.ping()
  const again = await RawClient.connect(b.port())
  onTestFinished(() => again.end())
  expect((await again.connectMqtt({ clientId: 'idle-a' })).returnCode).toBe(0)
  // a connection reset by the client: the same
  raw[2]!.socket.resetAndDestroy()
  await raw[1]!.ping()
  await again.ping()
})

test('a v5 connection still gets its topic aliases and its DISCONNECT lingers, through the shared functions', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_topic_alias 5\n')
  onTestFinished(() => b.close())
  const sub = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => sub.end())
  expect((await sub.connectMqtt({ clientId: 's', protocolVersion: 5, properties: { topicAliasMaximum: 4 } })).reasonCode ?? 0).toBe(0)
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'long/topic/name', qos: 0 }] })
  await sub.next('suback')
  const pub = await RawClient.connect(b.port())
  onTestFinished(() => pub.end())
  await pub.connectMqtt({ clientId: 'p' })
  for (let i = 0; i < 2; i++) pub.send({ cmd: 'publish', topic: 'long/topic/name', payload: Buffer.from(String(i)), qos: 0 })
  const first = await sub.next('publish')
  const second = await sub.next('publish')
  expect([first.topic, first.properties?.topicAlias]).toEqual(['long/topic/name', 1])
  expect([second.topic, second.properties?.topicAlias]).toEqual(['', 1])
  // an alias over the listener's max_topic_alias: DISCONNECT 0x94 reaches the client before the close
  sub.send({ cmd: 'publish', topic: 'x', payload: Buffer.from('y'), qos: 0, properties: { topicAlias: 6 } })
  expect((await sub.next('disconnect')).reasonCode).toBe(0x94)
})

test('a CONNECT with nothing stored is answered with the empty stored queue; a stored one is still delivered (LevelDB)', async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-empty-queue-')
  const b = await startTestBroker(`listener 0 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location ${dir}/\n`)
  onTestFinished(async () => { await b.close(); await remove() })
  const store = brokerInternals(b.broker.aedes).persistence as { outgoingStream: (c: { id: string, clean: boolean }) => unknown }
  expect(isEmptyStoredQueue(store.outgoingStream({ id: 'nobody', clean: false }))).toBe(true)
  expect(isEmptyStoredQueue(store.outgoingStream({ id: 'nobody', clean: true }))).toBe(true)
  // a persistent session's first CONNECT reads the empty queue; its queue, once stored, is read from the store
  const dev = await RawClient.connect(b.port())
  expect((await dev.connectMqtt({ clientId: 'dev', clean: false })).returnCode).toBe(0)
  dev.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q', qos: 1 }] })
  await dev.next('suback')
  dev.send({ cmd: 'disconnect' })
  await dev.closed
  const pub = await RawClient.connect(b.port())
  onTestFinished(() => pub.end())
  await pub.connectMqtt({ clientId: 'pub' })
  pub.send({ cmd: 'publish', topic: 'q', payload: Buffer.from('kept'), qos: 1, messageId: 3 })
  await pub.next('puback')
  expect(isEmptyStoredQueue(store.outgoingStream({ id: 'dev', clean: false }))).toBe(false)
  const back = await RawClient.connect(b.port())
  onTestFinished(() => back.end())
  expect((await back.connectMqtt({ clientId: 'dev', clean: false })).sessionPresent).toBe(true)
  const got = await back.next('publish')
  expect([got.topic, got.payload.toString(), got.qos]).toEqual(['q', 'kept', 1])
})

test('mqtt-packet writes numbers without its table of 65,536 buffers', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  onTestFinished(() => c.end())
  expect((await c.connectMqtt({ clientId: 'n' })).returnCode).toBe(0)
  c.send({ cmd: 'subscribe', messageId: 300, subscriptions: [{ topic: 't', qos: 1 }] })
  expect((await c.next('suback')).messageId).toBe(300)
  const numbers = createRequire(createRequire(import.meta.url).resolve('mqtt-packet'))('./numbers.js') as { cache: Record<number, Buffer> }
  expect(Object.keys(numbers.cache)).toHaveLength(0)
})
