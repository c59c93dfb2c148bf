/** Runs the daemon: config -> logger -> broker; signals; one readable line and the right exit code on failure. */
import { loadConfig, type LoadOptions } from '../config/load.js'
import { createLogger, type Logger } from '../logging/logger.js'
import { Broker } from '../broker/broker.js'
import { VERSION } from '../version.js'

function isLoopback (addr: string | undefined): boolean {
  return addr === '127.0.0.1' || addr === '::1' || addr === 'localhost'
}

export async function runDaemon (opts: LoadOptions): Promise<void> {
  const config = loadConfig(opts)
  // every line of a cluster node names it
  const log: Logger = createLogger(config.log, config.cluster ? { nodeId: config.cluster.nodeId } : {})
  log.info({ version: VERSION }, `Midge version ${VERSION} starting`)
  log.info(config.configFile ? `Config loaded from ${config.configFile}.` : 'Using default config.')
  for (const w of config.warnings) log.warn(w)
  if (config.localOnly) {
    log.info('Starting in local only mode. Connections will only be possible from clients running on this machine. Create a configuration file which defines a listener to allow remote access.')
  }
  for (const l of config.listeners) {
    if (l.auth.allowAnonymous && l.protocol !== 'http' && !isLoopback(l.bindAddress) && l.unixSocketPath === undefined) {
      log.warn({ listener: l.id }, `Anonymous access is allowed on ${l.transport} listener ${l.bindAddress ?? '*'}:${l.port}: anyone who can reach it may publish and subscribe. Set allow_anonymous false and a password_file to restrict it.`)
    }
  }
  const broker = await Broker.start(config, { log })
  log.info({ version: VERSION }, `Midge version ${VERSION} running`)

  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) { log.warn(`${signal} again: exiting now`); process.exit(1) }
    stopping = true
    log.info(`${signal} received, shutting down.`)
    broker.close().then(() => {
      log.info('Midge stopped.')
      process.exit(0)
    }, (err: Error) => {
      log.error({ err: err.message }, 'error during shutdown')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGHUP', () => {
    log.info('SIGHUP received, reloading password and ACL files, auth plugins and TLS certificates.')
    broker.reload().catch((err: Error) => log.error({ err: err.message }, 'reload failed'))
  })
}
