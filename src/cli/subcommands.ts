import type { Command } from 'commander'

/** Subcommands added by later work (passwd, certs, store) register here, one line each. */
const registrars: Array<(program: Command) => void> = []

export function registerSubcommands (program: Command): void {
  for (const r of registrars) r(program)
}
