/**
 * Where the pinned aedes (2.0.0-beta.1) is wrong, Midge works around it; each test here fails on bare aedes.
 * And the start-up self-check that guards every aedes internal Midge uses (src/aedes/internals.ts).
 */
import { test, expect } from 'vitest'
import { Aedes } from 'aedes'
import { startTestBroker } from '../helpers/start-broker.js'
import { RawClient } from '../helpers/raw-client.js'
import { checkAedes, AEDES_VERSION } from '../../src/aedes/internals.js'

const PROTOTYPE_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']

test('client ids that name Object.prototype members connect, take each other over and leave the broker running', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  for (const id of PROTOTYPE_NAMES) {
    const first = await RawClient.connect(b.port())
    onTestFinished(() => first.end())
    expect((await first.connectMqtt({ clientId: id })).returnCode).toBe(0)
    // the same id again: aedes looks the id up in its client table to take the session over
    const second = await RawClient.connect(b.port())
    onTestFinished(() => second.end())
    expect((await second.connectMqtt({ clientId: id })).returnCode).toBe(0)
    await first.closed
  }
  const probe = await RawClient.connect(b.port())
  onTestFinished(() => probe.end())
  expect((await probe.connectMqtt({ clientId: 'after' })).returnCode).toBe(0)
})

test('topic filters that name Object.prototype members are subscribed and delivered like any other', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const sub = await RawClient.connect(b.port())
  onTestFinished(() => sub.end())
  await sub.connectMqtt({ clientId: 'sub' })
  const names = PROTOTYPE_NAMES.filter(n => n !== '__proto__')
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: names.map(topic => ({ topic, qos: 1 })) })
  expect((await sub.next('suback')).granted).toEqual([1, 1, 1, 1])
  const pub = await RawClient.connect(b.port())
  onTestFinished(() => pub.end())
  await pub.connectMqtt({ clientId: 'pub' })
  pub.send({ cmd: 'publish', topic: 'toString', payload: Buffer.from('x'), qos: 1, messageId: 5 })
  await pub.next('puback')
  const got = await sub.next('publish')
  expect([got.topic, got.payload.toString(), got.qos]).toEqual(['toString', 'x', 1])
})

test('a repeated PUBREL (memory store) is answered with PUBCOMP each time and the broker keeps serving', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  onTestFinished(() => c.end())
  await c.connectMqtt({ clientId: 'q2' })
  c.send({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 2, messageId: 7 })
  expect((await c.next('pubrec')).messageId).toBe(7)
  c.send({ cmd: 'pubrel', messageId: 7 })
  c.send({ cmd: 'pubrel', messageId: 7 })
  c.send({ cmd: 'pubrel', messageId: 7 })
  for (let i = 0; i < 3; i++) expect((await c.next('pubcomp')).messageId).toBe(7)
  const probe = await RawClient.connect(b.port())
  onTestFinished(() => probe.end())
  expect((await probe.connectMqtt({ clientId: 'probe' })).returnCode).toBe(0)
})

test('the start-up self-check passes on the pinned aedes and names what changed otherwise', async () => {
  const aedes = await Aedes.createBroker()
  try {
    expect(() => checkAedes(aedes)).not.toThrow()
    Object.defineProperty(aedes, 'version', { value: '9.9.9' })
    expect(() => checkAedes(aedes)).toThrow(`version 9.9.9 (Midge is built for ${AEDES_VERSION})`)
    ;(aedes as unknown as { counter: unknown }).counter = undefined
    expect(() => checkAedes(aedes)).toThrow('broker.counter is not a number')
  } finally {
    await new Promise<void>(resolve => aedes.close(() => resolve()))
  }
})

test('the filter `__proto__` alone is refused in its SUBACK (aedes would break the whole SUBSCRIBE); the others are granted', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port())
  onTestFinished(() => c.end())
  await c.connectMqtt({ clientId: 'proto' })
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a', qos: 1 }, { topic: '__proto__', qos: 0 }, { topic: 'b', qos: 2 }] })
  expect((await c.next('suback')).granted).toEqual([1, 128, 2])
  c.send({ cmd: 'publish', topic: 'b', payload: Buffer.from('x'), qos: 0 })
  expect((await c.next('publish')).topic).toBe('b')
})

test('3.1.1: more than 1000 QoS 2 messages awaiting PUBREL close the connection; released ones free their slot', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const ok = await RawClient.connect(b.port())
  onTestFinished(() => ok.end())
  await ok.connectMqtt({ clientId: 'releases' })
  for (let id = 1; id <= 1200; id++) {
    ok.send({ cmd: 'publish', topic: 'q2', payload: Buffer.from('x'), qos: 2, messageId: id })
    ok.send({ cmd: 'pubrel', messageId: id })
  }
  for (let i = 0; i < 1200; i++) await ok.next('pubcomp')
  const flood = await RawClient.connect(b.port())
  onTestFinished(() => flood.end())
  await flood.connectMqtt({ clientId: 'withholds' })
  for (let id = 1; id <= 1001; id++) flood.send({ cmd: 'publish', topic: 'q2', payload: Buffer.from('x'), qos: 2, messageId: id })
  await flood.closed
  expect(flood.packets.filter(p => p.cmd === 'pubrec').length).toBeLessThanOrEqual(1000)
  await ok.ping()
})

test('v5: one QoS 2 message over the Receive Maximum the CONNACK gave gets DISCONNECT 0x93', async ({ onTestFinished }) => {
  const b = await startTestBroker('listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 5\n')
  onTestFinished(() => b.close())
  const c = await RawClient.connect(b.port(), '127.0.0.1', 5)
  onTestFinished(() => c.end())
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'rm', keepalive: 60 })
  expect((await c.next('connack')).properties?.receiveMaximum).toBe(5)
  for (let id = 1; id <= 5; id++) c.send({ cmd: 'publish', topic: 'q2', payload: Buffer.from('x'), qos: 2, messageId: id })
  for (let i = 0; i < 5; i++) await c.next('pubrec')
  c.send({ cmd: 'publish', topic: 'q2', payload: Buffer.from('x'), qos: 2, messageId: 6 })
  expect((await c.next('disconnect')).reasonCode).toBe(0x93)
  await c.closed
})
