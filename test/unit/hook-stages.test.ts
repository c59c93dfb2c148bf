/** Each aedes hook's stages, in order, for a single node and a cluster node; the diagram in ARCHITECTURE.md is the table's. */
import { test, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import type { AedesPublishPacket, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes'
import { hookStages, composeHooks, stageNames, renderHookDiagram, type StageSources } from '../../src/broker/hook-stages.js'
import type { Wrap } from '../../src/broker/aedes-hooks.js'
import { BrokerStats } from '../../src/sys/stats.js'
import { startTestBroker } from '../helpers/start-broker.js'

/** Sources whose every stage notes its name in `trace` and goes on (the cluster gate and sys/forward are the real ones). */
function sources (trace: string[], cluster?: { health: { up: boolean } }): StageSources {
  const wrap = <H extends (...a: never[]) => unknown>(name: string): Wrap<H> => next => ((...a: Parameters<H>) => { trace.push(name); return next(...a) }) as H
  return {
    base: {
      preConnect: (_c, _p, cb) => { trace.push('connect-facts'); cb(null, true) },
      authenticate: (_c, _u, _p, cb) => { trace.push('connect-auth'); cb(null, true) },
      publish: { limits: wrap('limits'), dollarTopics: wrap('dollar-topics'), acl: (_c, _p, cb) => { trace.push('acl'); cb(null) } },
      subscribe: { dollarTopics: wrap('dollar-topics'), limits: wrap('limits'), acl: (_c, s, cb) => { trace.push('acl'); cb(null, s) } },
      authorizeForward: (_c, p) => { trace.push('acl'); return p }
    },
    bridgePeers: { preConnect: wrap('bridge-peers'), forward: wrap('bridge-peers') },
    shared: { authorizeSubscribe: wrap('shared-subscriptions') },
    durability: { authorizePublish: wrap('durability'), published: (_p, _c, cb) => { trace.push('durability'); cb(null) } },
    stats: new BrokerStats(),
    ...(cluster ? { cluster } : {})
  }
}

const SINGLE = {
  preConnect: ['bridge-peers', 'connect-facts'],
  authenticate: ['connect-auth'],
  authorizeSubscribe: ['shared-subscriptions', 'dollar-topics', 'limits', 'acl'],
  authorizePublish: ['durability', 'limits', 'dollar-topics', 'acl'],
  published: ['durability'],
  authorizeForward: ['bridge-peers', 'stats', 'dollar-topics', 'acl']
}

const CLUSTER = {
  ...SINGLE,
  authenticate: ['cluster-gate', 'connect-auth'],
  authorizePublish: ['durability', 'cluster-gate', 'limits', 'dollar-topics', 'acl']
}

test('a single node: each hook\'s stages in order', () => {
  expect(stageNames(hookStages(sources([])))).toEqual(SINGLE)
})

test('a cluster node adds the Redis gate to authenticate and authorizePublish', () => {
  expect(stageNames(hookStages(sources([], { health: { up: true } })))).toEqual(CLUSTER)
})

test.each([['single node', undefined, SINGLE], ['cluster', { health: { up: true } }, CLUSTER]] as const)('%s: the composed hooks run their stages in the listed order', (_name, cluster, expected) => {
  const trace: string[] = []
  const src = sources(trace, cluster)
  const h = composeHooks(hookStages(src))
  const client = { id: 'c' } as Client
  const run = (hook: keyof typeof expected, call: () => void): void => {
    trace.length = 0
    call()
    // the Redis gate and the forward stages are the real ones: they leave no trace of their own
    const untraced = new Set(['cluster-gate', 'stats'])
    expect(trace, hook).toEqual(expected[hook].filter(n => !untraced.has(n) && !(hook === 'authorizeForward' && n === 'dollar-topics')))
  }
  run('preConnect', () => h.preConnect(client, {} as ConnectPacket, () => {}))
  run('authenticate', () => h.authenticate(client, undefined, undefined, () => {}))
  run('authorizeSubscribe', () => h.authorizeSubscribe(client, { topic: 'a', qos: 0 } as Subscription, () => {}))
  run('authorizePublish', () => h.authorizePublish(client, { topic: 'a', qos: 0, payload: Buffer.from('x') } as PublishPacket, () => {}))
  run('published', () => h.published({} as AedesPublishPacket, client, () => {}))
  run('authorizeForward', () => h.authorizeForward(client, { topic: 'a', qos: 0, payload: Buffer.from('xy') } as AedesPublishPacket))
  // the stats stage counted the one message the later stages let through
  expect([src.stats.publishSent, src.stats.publishBytesSent]).toEqual([1, 2])
})

test('the cluster gate refuses CONNECT and PUBLISH while Redis is down, before the later stages', () => {
  const trace: string[] = []
  const h = composeHooks(hookStages(sources(trace, { health: { up: false } })))
  const client = { id: 'c' } as Client
  let code: number | undefined
  h.authenticate(client, undefined, undefined, err => { code = err?.returnCode })
  let refused: Error | null | undefined
  h.authorizePublish(client, { topic: 'a', qos: 1, payload: Buffer.from('x') } as PublishPacket, err => { refused = err })
  expect(code).toBe(3)
  expect(refused?.message).toMatch(/Redis is unreachable/)
  expect(trace).toEqual(['durability'])
})

test('ARCHITECTURE.md shows the hook stages exactly as the table lists them', () => {
  const doc = readFileSync(new URL('../../ARCHITECTURE.md', import.meta.url), 'utf8')
  const diagram = renderHookDiagram(hookStages(sources([])), hookStages(sources([], { health: { up: true } })))
  expect(doc).toContain('```\n' + diagram + '\n```')
})

test('a started broker keeps the stages it composed', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  expect(b.broker.hookStages).toEqual(SINGLE)
})
