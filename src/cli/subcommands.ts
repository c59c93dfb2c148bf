import type { Command } from 'commander'
import { registerPasswd } from './passwd.js'
import { registerCerts } from './certs.js'
import { registerStore } from './store.js'

/** Subcommands added by later work (passwd, certs, store) register here, one line each. */
const registrars: Array<(program: Command) => void> = [registerPasswd, registerCerts, registerStore]

export function registerSubcommands (program: Command): void {
  for (const r of registrars) r(program)
}
