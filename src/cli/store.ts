/**
 * `midge store`: tools for the LevelDB store of a config. The broker must be stopped (the store is locked
 * while it runs).
 *
 *   midge store check -c FILE    read every record; exit 0 and print counts, or exit 1 naming the corruption
 *   midge store repair -c FILE   LevelDB's RepairDB: rebuilds the store from what is readable (back it up first)
 */
import type { Command } from 'commander'
import { loadConfig } from '../config/load.js'
import { BrokerError } from '../errors.js'
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
}
