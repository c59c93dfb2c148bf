import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, startBroker, type Broker } from '../../src/index.js'

export interface TestBroker {
  broker: Broker
  dir: string
  url (transport?: 'tcp' | 'tls' | 'ws' | 'wss'): string
  port (transport?: 'tcp' | 'tls' | 'ws' | 'wss'): number
  close (): Promise<void>
}

/** A temp dir removed when the test ends. */
export async function tempDir (prefix = 'midge-test-'): Promise<{ dir: string, remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) }
}

/**
 * Starts an in-process Midge from mosquitto.conf text (use `listener 0 127.0.0.1` for ephemeral ports),
 * through the same loadConfig path as the daemon. `{dir}` in the text is replaced by a fresh temp dir.
 */
export async function startTestBroker (conf = 'listener 0 127.0.0.1\nallow_anonymous true\n'): Promise<TestBroker> {
  const { dir, remove } = await tempDir()
  const config = loadConfig({ configText: conf.replaceAll('{dir}', dir), configName: 'test.conf' })
  let broker: Broker
  try {
    broker = await startBroker(config)
  } catch (err) {
    await remove()
    throw err
  }
  const find = (t: string) => {
    const b = broker.bound.find(x => x.config.transport === t)
    if (!b) throw new Error(`no ${t} listener`)
    return b
  }
  return {
    broker,
    dir,
    url: (t = 'tcp') => broker.url(t),
    port: (t = 'tcp') => find(t).address.port,
    close: async () => { await broker.close(); await remove() }
  }
}
