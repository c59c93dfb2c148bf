/**
 * The commander program. Bare `midge [-c FILE] [-p PORT] [-v]` runs the broker (mosquitto's flags);
 * subcommands: check. Flags carry no defaults here: defaults live in config/schema.ts only.
 */
import { Command, Option } from 'commander'
import { VERSION } from '../version.js'
import { loadConfig } from '../config/load.js'
import { runDaemon } from './run.js'
import { registerSubcommands } from './subcommands.js'
import { redactAuthOptions } from '../auth/plugin.js'
import { redactUrl } from '../config/mosquitto-conf.js'
import { checkFiles } from './check-files.js'
import { BrokerError } from '../errors.js'

function collectPort (value: string, prev: number[] = []): number[] {
  if (!/^\d+$/.test(value) || Number(value) > 65535) throw new Error(`Invalid port value (${value}).`)
  return [...prev, Number(value)]
}

export function buildProgram (): Command {
  const program = new Command()
  program
    .name('midge')
    .description('Midge: a self-hosted MQTT 5.0 and 3.1.1 broker, configured like mosquitto.')
    .version(`midge version ${VERSION}`, '-V, --version')
    .option('-c, --config-file <file>', 'read configuration from a mosquitto-style file (without it: localhost:1883 only)')
    .option('-p, --port <port>', 'listen on this port instead of 1883 when the file defines no listener (repeatable)', collectPort)
    .option('-v, --verbose', 'log everything (log_type all)')
    .addOption(new Option('-d, --daemon', 'accepted for mosquitto compatibility; Midge stays in the foreground (use systemd or Docker)').hideHelp())
    .action(async (opts: { configFile?: string, port?: number[], verbose?: boolean }) => {
      await runDaemon({ configFile: opts.configFile, ports: opts.port, verbose: opts.verbose })
    })

  program.command('check')
    .description('validate a config file, open every file it names, and print the effective settings without opening ports (exit 0; 3 on config errors, 1 when a named file would stop start-up)')
    .option('-c, --config-file <file>', 'config file to check')
    .option('-p, --port <port>', 'as for the broker', collectPort)
    .action(async (opts: { configFile?: string, port?: number[] }) => {
      const cfg = loadConfig({ configFile: opts.configFile, ports: opts.port })
      for (const w of cfg.warnings) process.stderr.write(`${w}\n`)
      // every file the config names, opened as start-up opens it: OK here means the broker starts, ports aside
      const files = await checkFiles(cfg)
      for (const w of files.warnings) process.stderr.write(`${w}\n`)
      if (files.errors.length > 0) {
        const exitCode = Math.max(...files.errors.map(e => e.exitCode))
        throw new BrokerError(exitCode === 3 ? 'CONFIG_INVALID' : 'AUTH_FILE', files.errors[0]!.line, { problems: files.errors.map(e => e.line) })
      }
      // a password inside cluster_redis' URL is as secret as cluster_redis_password
      process.stdout.write(`${JSON.stringify(cfg, (k, v: unknown) => k === 'redisUrl' && typeof v === 'string' ? redactUrl(v) : redactAuthOptions(k, v), 2)}\n`)
      process.stdout.write('Configuration OK\n')
    })

  registerSubcommands(program)
  return program
}
