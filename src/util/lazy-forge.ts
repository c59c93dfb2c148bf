/**
 * node-forge, loaded on first use: only the CSR page and `midge certs` need it, and loading it at start-up cost
 * every broker about 80 ms and 10 MB of RSS (measured: `node -e "require('node-forge')"` 0.16 s / 50 MB against
 * 0.08 s / 40 MB for an empty script).
 */
import { createRequire } from 'node:module'
import type forge from 'node-forge'

const require = createRequire(import.meta.url)
let loaded: typeof forge | undefined

export function nodeForge (): typeof forge {
  loaded ??= require('node-forge') as typeof forge
  return loaded
}
