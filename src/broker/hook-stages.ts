/**
 * Every aedes hook Midge installs, as an ordered list of named stages: the one table of who runs when on a
 * CONNECT, a SUBSCRIBE, a PUBLISH and a delivery (fastify's lib/hooks.js and Lifecycle.md are the model).
 *
 * A stage is `wrap(next) => hook`: it runs its rule, then calls the rest of the hook (`next`) or answers itself.
 * The last stage of each hook is a plain hook. `composeHooks` nests the wraps once at start-up, so a call costs
 * what the hand-written nesting cost: no allocation and no closure per call (authorizeForward is synchronous and
 * runs for every message delivered).
 *
 * ARCHITECTURE.md's hook diagram is `renderHookDiagram` of this table (test/unit/hook-stages.test.ts keeps them equal).
 */
import type { BrokerStats } from '../sys/stats.js'
import { countSent, dollarTopics } from '../sys/forward.js'
import { gateAuthenticate, gatePublish, type RedisGate } from '../cluster/wire.js'
import type { Authenticate, AuthorizeForward, AuthorizePublish, AuthorizeSubscribe, Hooks, PreConnect, Published } from './aedes-hooks.js'

/** A stage before the rest of the hook. `does` is its line in the diagram. */
export interface Stage<H> { readonly name: string, readonly does: string, readonly wrap: (next: H) => H }
/** The innermost stage: nothing runs after it. */
export interface LastStage<H> { readonly name: string, readonly does: string, readonly hook: H }
/** A hook's stages, outermost (first to run) first. */
export type Stages<H> = readonly [...Array<Stage<H>>, LastStage<H>]

export interface HookTable {
  preConnect: Stages<PreConnect>
  authenticate: Stages<Authenticate>
  authorizeSubscribe: Stages<AuthorizeSubscribe>
  authorizePublish: Stages<AuthorizePublish>
  published: Stages<Published>
  authorizeForward: Stages<AuthorizeForward>
}

export type HookName = keyof HookTable
/** The hooks in the order a client meets them. */
export const HOOK_NAMES: readonly HookName[] = ['preConnect', 'authenticate', 'authorizeSubscribe', 'authorizePublish', 'published', 'authorizeForward']

/** What each module contributes: the methods that make its stages (structural, so a test can pass its own). */
export interface StageSources {
  /** Midge's own rules (aedes-hooks.ts). */
  base: Pick<Hooks, 'preConnect' | 'authenticate' | 'publish' | 'subscribe' | 'authorizeForward'>
  /** Other brokers' bridges connected here (bridge/peers.ts). */
  bridgePeers: { preConnect: (next: PreConnect) => PreConnect, forward: (next: AuthorizeForward) => AuthorizeForward }
  /** `$share/` names (shared-subscriptions.ts). */
  shared: { authorizeSubscribe: (next: AuthorizeSubscribe) => AuthorizeSubscribe }
  /** Arrival order and the QoS 1 journal (persistence/durability.ts). */
  durability: { authorizePublish: (next: AuthorizePublish) => AuthorizePublish, readonly published: Published }
  stats: BrokerStats
  /** Cluster mode only: the Redis gate (cluster/wire.ts). */
  cluster?: RedisGate
}

function stage<H> (name: string, does: string, wrap: (next: H) => H): Stage<H> {
  return { name, does, wrap }
}

function last<H> (name: string, does: string, hook: H): LastStage<H> {
  return { name, does, hook }
}

/** The table: every hook's stages in the order they run. */
export function hookStages (s: StageSources): HookTable {
  const { base, cluster } = s
  return {
    preConnect: [
      stage('bridge-peers', 'bridge/peers.ts: a peer bridge\'s CONNECT flag noted', next => s.bridgePeers.preConnect(next)),
      last('connect-facts', 'aedes-hooks.ts: the will topic\'s checks, the connection\'s facts kept (ClientInfo)', base.preConnect)
    ],
    authenticate: [
      ...(cluster === undefined ? [] : [stage<Authenticate>('cluster-gate', 'cluster/wire.ts: CONNACK 3 while Redis is down', next => gateAuthenticate(cluster, next))]),
      last('connect-auth', 'aedes-hooks.ts: client id rules, password file / plug-ins (auth/connect.ts), will screen, resumed queue, clean start\'s unreleased QoS 2 dropped', base.authenticate)
    ],
    authorizeSubscribe: [
      stage('shared-subscriptions', 'shared-subscriptions.ts: a $share/ filter checked as written, then joins its group', next => s.shared.authorizeSubscribe(next)),
      stage('dollar-topics', 'aedes-hooks.ts: $MIDGE refused (mqtt/reserved-topics.ts)', base.subscribe.dollarTopics),
      stage('limits', 'aedes-hooks.ts: max_topic_length, U+0000, max_qos, deny_bare_wildcard_subscription', base.subscribe.limits),
      last('acl', 'aedes-hooks.ts: ACL and plug-ins (v5 0x80 / 0x87), max_subscriptions_per_client', base.subscribe.acl)
    ],
    authorizePublish: [
      stage('durability', 'persistence/durability.ts: arrival order ids, v5 expiry as a time, QoS 1 journal before PUBACK', next => s.durability.authorizePublish(next)),
      ...(cluster === undefined ? [] : [stage<AuthorizePublish>('cluster-gate', 'cluster/wire.ts: refused while Redis is down', next => gatePublish(cluster, next))]),
      stage('limits', 'aedes-hooks.ts: max_topic_length, U+0000, message_size_limit, retain_available, max_qos, payload format', base.publish.limits),
      stage('dollar-topics', 'aedes-hooks.ts: $SYS/ and $MIDGE acknowledged and dropped (mqtt/reserved-topics.ts)', base.publish.dollarTopics),
      last('acl', 'aedes-hooks.ts: ACL and plug-ins, v5 ack codes (0x87, 0x10, 0x97)', base.publish.acl)
    ],
    published: [
      last('durability', 'persistence/durability.ts: journal entry completed', s.durability.published)
    ],
    authorizeForward: [
      stage('bridge-peers', 'bridge/peers.ts: nothing back to the peer bridge that sent it', next => s.bridgePeers.forward(next)),
      stage('stats', 'sys/forward.ts: publishes and bytes sent counted', next => countSent(s.stats, next)),
      stage('dollar-topics', 'sys/forward.ts: aedes\' bookkeeping and unsubscribed $ topics dropped [MQTT-4.7.2-1]', dollarTopics),
      last('acl', 'aedes-hooks.ts: read ACL, QoS clamp, every matching v5 Subscription Identifier, Maximum Packet Size', base.authorizeForward)
    ]
  }
}

function compose<H> (stages: Stages<H>): H {
  const inner = stages[stages.length - 1] as LastStage<H>
  let hook = inner.hook
  for (let i = stages.length - 2; i >= 0; i--) hook = (stages[i] as Stage<H>).wrap(hook)
  return hook
}

/** The hooks for `Aedes.createBroker`, each its stages nested once. */
export function composeHooks (t: HookTable): { [K in HookName]: HookTable[K] extends Stages<infer H> ? H : never } {
  return {
    preConnect: compose(t.preConnect),
    authenticate: compose(t.authenticate),
    authorizeSubscribe: compose(t.authorizeSubscribe),
    authorizePublish: compose(t.authorizePublish),
    published: compose(t.published),
    authorizeForward: compose(t.authorizeForward)
  }
}

/** Each hook's stage names, outermost first: logged at start-up (debug) and kept on the Broker. */
export function stageNames (t: HookTable): Record<HookName, string[]> {
  const out = {} as Record<HookName, string[]>
  for (const h of HOOK_NAMES) out[h] = t[h].map(x => x.name)
  return out
}

const HOOK_COLUMN = 20
const STAGE_COLUMN = 22
const WIDTH = 118

/** `text` in lines of at most `width` characters, cut between words. */
function wrapWords (text: string, width: number): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) { lines.push(line); line = word } else line = line === '' ? word : `${line} ${word}`
  }
  lines.push(line)
  return lines
}

/**
 * The diagram of both tables: one line per stage, outermost first; a stage only the cluster table has is marked.
 * The cluster table is the single-node one plus its gates.
 */
export function renderHookDiagram (single: HookTable, cluster: HookTable): string {
  const lines: string[] = []
  for (const h of HOOK_NAMES) {
    const one = new Set(single[h].map(x => x.name))
    cluster[h].forEach((x, i) => {
      const does = wrapWords(`${one.has(x.name) ? '' : '(cluster mode) '}${x.does}`, WIDTH - HOOK_COLUMN - STAGE_COLUMN)
      does.forEach((text, j) => {
        const head = (i === 0 && j === 0 ? h : '').padEnd(HOOK_COLUMN) + (j === 0 ? x.name : '').padEnd(STAGE_COLUMN)
        lines.push(`${head}${text}`)
      })
    })
  }
  return lines.join('\n')
}
