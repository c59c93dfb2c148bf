/**
 * `midge store`: tools for the LevelDB store of a config. The broker must be stopped (the store is locked
 * while it runs).
 *
 *   midge store check -c FILE    read every record; exit 0 and print counts, or exit 1 naming the corruption
 *   midge store repair -c FILE   LevelDB's RepairDB: rebuilds the store from what is readable (back it up first)
 *   midge store bridges -c FILE [--drop NAME]   the bridges' outgoing queues: depth, oldest message; drops one
 */
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Command } from 'commander'
import { loadConfig } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { BrokerError } from '../errors.js'
import { BridgeQueue, type QueueSummary } from '../bridge/queue.js'
import { bridgeLeaseKey } from '../bridge/index.js'
import { connectRedis } from '../cluster/redis.js'
import { loadClassicLevel, repairStore, storePath, isCorruption, corruptStoreError } from '../persistence/level.js'

function storeOf (configFile: string | undefined): { location: string, file: string, path: string } {
  const cfg = loadConfig({ configFile })
  if (!cfg.persistence.enabled) throw new BrokerError('USAGE', 'Error: this configuration has "persistence false": there is no store.')
  return { location: cfg.persistence.location, file: cfg.persistence.file, path: storePath(cfg.persistence.location, cfg.persistence.file) }
}

/** Counts the records of a store by key family; throws STORE_CORRUPT / STORE_LOCKED / STORE_OPEN. */
export async function checkStore (path: string): Promise<Record<string, number>> {
  const Level = await loadClassicLevel()
  const db = new Level<string, Buffer>(path, { valueEncoding: 'buffer', createIfMissing: false })
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string, message?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') throw new BrokerError('STORE_LOCKED', `Error: persistence store ${path} is locked: stop the Midge using it first.`, { cause: err })
    const corrupt = isCorruption(err)
    if (corrupt !== undefined) throw corruptStoreError(path, corrupt, err)
    throw new BrokerError('STORE_OPEN', `Error: cannot open persistence store ${path}: ${cause?.message ?? (err as Error).message}.`, { cause: err })
  }
  const counts: Record<string, number> = {}
  try {
    for await (const key of db.keys({ fillCache: false })) {
      const family = key.slice(0, Math.max(0, key.indexOf(':'))) || key
      counts[family] = (counts[family] ?? 0) + 1
    }
    // values too: a damaged block can hold values whose keys were readable from the index
    for await (const v of db.values({ fillCache: false })) void v
  } catch (err) {
    const corrupt = isCorruption(err)
    if (corrupt !== undefined) throw corruptStoreError(path, corrupt, err)
    throw err
  } finally {
    // the read's own error (or its result) is what the command reports
    await db.close().catch(() => {})
  }
  return counts
}

/** "12 min", "3 h": how long ago, for a person. */
function ago (ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 120) return `${s} s`
  if (s < 7200) return `${Math.round(s / 60)} min`
  if (s < 172_800) return `${Math.round(s / 3600)} h`
  return `${Math.round(s / 86_400)} d`
}

function describe (name: string, q: QueueSummary, now: number): string {
  if (q.depth === 0) return `  ${name}: empty`
  const oldest = q.oldest!
  return `  ${name}: ${q.depth} message(s), ${q.sent} sent and not yet acknowledged; oldest queued ${new Date(oldest.queuedAt).toISOString()} (${ago(now - oldest.queuedAt)} ago) for ${oldest.topic}`
}

/**
 * The bridges' queues: LevelDB (`PERSISTENCE_LOCATION/bridges/NAME`, the broker must be stopped: the queue is locked
 * while it runs) or, with cluster_redis, Redis. Queues of bridges no longer in the config are listed as well.
 */
async function bridgeQueues (cfg: Config, drop: string | undefined): Promise<string[]> {
  const names = cfg.bridges.map(b => b.name)
  const now = Date.now()
  const out: string[] = []
  if (cfg.cluster) {
    const redis = await connectRedis(cfg.cluster, 'store-cli')
    try {
      for (const k of await redis.keys('midge:bridge:*:queue')) {
        const name = k.slice('midge:bridge:'.length, -':queue'.length)
        if (!names.includes(name)) names.push(name)
      }
      if (drop !== undefined && !names.includes(drop)) throw new BrokerError('USAGE', `Error: there is no bridge queue named ${drop}.`)
      out.push('Bridge queues (Redis):')
      for (const name of names) {
        const q = await BridgeQueue.openRedis({ name, redis, limit: Number.MAX_SAFE_INTEGER })
        if (name === drop) {
          // the node running the bridge holds its queue in memory as well and would send it anyway
          if (await redis.exists(bridgeLeaseKey(name)) === 1) throw new BrokerError('USAGE', `Error: bridge ${name} is running on a node of the cluster (${bridgeLeaseKey(name)} is held): stop that node's bridge first.`)
          out.push(`  ${name}: ${await q.clear()} message(s) dropped.`)
        } else out.push(describe(name, q.summary(), now))
      }
    } finally {
      redis.disconnect()
    }
    return out
  }
  if (!cfg.persistence.enabled) throw new BrokerError('USAGE', 'Error: this configuration has "persistence false": bridge queues are kept in memory only.')
  const dir = join(cfg.persistence.location, 'bridges')
  let present: string[] = []
  try {
    present = readdirSync(dir, { withFileTypes: true }).filter(d => d.isDirectory()).map(d => d.name)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  for (const name of present) if (!names.includes(name)) names.push(name)
  if (drop !== undefined && !present.includes(drop)) throw new BrokerError('USAGE', `Error: there is no bridge queue named ${drop} in ${dir}.`)
  out.push(`Bridge queues (${dir}):`)
  for (const name of names) {
    if (!present.includes(name)) { out.push(`  ${name}: empty (no queue yet)`); continue }
    const q = await BridgeQueue.open({ name, location: cfg.persistence.location, sync: true, limit: Number.MAX_SAFE_INTEGER, createIfMissing: false })
    try {
      if (name === drop) out.push(`  ${name}: ${await q.clear()} message(s) dropped.`)
      else out.push(describe(name, q.summary(), now) + (cfg.bridges.some(b => b.name === name) ? '' : ' (not in the configuration)'))
    } finally {
      await q.close()
    }
  }
  return out
}

export function registerStore (program: Command): void {
  const store = program.command('store').description('check or repair the LevelDB store of a config (stop the broker first)')
  store.command('check')
    .description('read every record of the store; exit 1 if it is corrupted')
    .requiredOption('-c, --config-file <file>', 'config file naming persistence_location')
    .action(async (opts: { configFile: string }) => {
      const { path } = storeOf(opts.configFile)
      const counts = await checkStore(path)
      process.stdout.write(`Store ${path} is readable: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ') || 'empty'}.\n`)
    })
  store.command('repair')
    .description('rebuild a corrupted store from what is readable (LevelDB RepairDB); back the directory up first')
    .requiredOption('-c, --config-file <file>', 'config file naming persistence_location')
    .action(async (opts: { configFile: string }) => {
      const { location, file } = storeOf(opts.configFile)
      const path = await repairStore(location, file)
      const counts = await checkStore(path)
      process.stdout.write(`Store ${path} repaired: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ') || 'empty'}.\n`)
    })
  store.command('bridges')
    .description('show the bridges\' outgoing queues (depth, oldest message), or drop one (stop the broker first)')
    .requiredOption('-c, --config-file <file>', 'config file with the connection blocks')
    .option('--drop <name>', 'drop every message queued for this bridge')
    .action(async (opts: { configFile: string, drop?: string }) => {
      const lines = await bridgeQueues(loadConfig({ configFile: opts.configFile }), opts.drop)
      process.stdout.write(lines.join('\n') + '\n')
    })
}
