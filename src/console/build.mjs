/**
 * Builds the web console into dist/console/ (run by `npm run build`): esbuild bundles main.ts into one
 * minified ES module, the page and style sheet are copied, and MQTT.js's browser build (from the installed
 * `mqtt` package) is copied beside them for the WebSocket panel, which loads it only when used.
 * Nothing here is committed; `npm ci` (prepare) and `npm run build` produce it.
 */
import { build } from 'esbuild'
import { copyFile, mkdir, mkdtemp, rename, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const ROOT = join(here, '../..')

/** The installed mqtt package's browser ES module build. */
function mqttBrowserBuild () {
  const entry = createRequire(import.meta.url).resolve('mqtt')
  let dir = dirname(entry)
  while (!dir.endsWith('node_modules/mqtt') && dir !== dirname(dir)) dir = dirname(dir)
  return join(dir, 'dist/mqtt.esm.js')
}

/**
 * Builds into a fresh temporary directory beside `outdir`, then renames each file into place: a broker serving
 * the console while it is rebuilt (tests run in parallel) never reads a half-written file.
 */
export async function buildConsole (outdir = join(ROOT, 'dist/console')) {
  await mkdir(outdir, { recursive: true })
  const tmp = await mkdtemp(`${outdir}.tmp-`)
  try {
    await build({
      entryPoints: [join(here, 'main.ts')],
      outfile: join(tmp, 'console.js'),
      bundle: true,
      format: 'esm',
      target: 'es2020',
      minify: true,
      legalComments: 'none',
      logLevel: 'warning'
    })
    await copyFile(join(here, 'index.html'), join(tmp, 'index.html'))
    await copyFile(join(here, 'console.css'), join(tmp, 'console.css'))
    await copyFile(mqttBrowserBuild(), join(tmp, 'mqtt.esm.js'))
    for (const name of ['mqtt.esm.js', 'console.css', 'console.js', 'index.html']) await rename(join(tmp, name), join(outdir, name))
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
  return outdir
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildConsole()
}
