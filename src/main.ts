#!/usr/bin/env node
/** bin entry: run the CLI and map errors to exit codes. The only place that calls process.exit on failure. */
import { CommanderError } from 'commander'
import { buildProgram } from './cli/program.js'
import { isBrokerError, describeError } from './errors.js'

const program = buildProgram()
program.exitOverride()

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here with exit code 0; usage errors were already printed by commander
    process.exit(err.exitCode === 0 ? 0 : 3)
  }
  if (isBrokerError(err)) {
    for (const line of err.problems) process.stderr.write(`${line}\n`)
    process.exit(err.exitCode)
  }
  process.stderr.write(`Error: ${describeError(err)}\n`)
  process.exit(1)
}
