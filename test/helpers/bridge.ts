/** Debian's mosquitto as a bridge's remote, and the bridge state it holds. */
import { userInfo } from 'node:os'
import net from 'node:net'
import mqttPacket from 'mqtt-packet'
import type { OnTestFinishedHandler } from 'vitest'
import { tempDir } from './start-broker.js'
import { freePort, spawnMosquitto, writeConf, type Daemon } from './processes.js'
import { connect } from './mqtt.js'

export type Finished = (fn: OnTestFinishedHandler) => void

/** mosquitto on `port` (default: a free one); `extra` goes before its listener, `listenerExtra` after it. */
export async function startRemote (onFinished: Finished, extra = '', listenerExtra = '', port?: number): Promise<{ daemon: Daemon, port: number, url: string, dir: string }> {
  const { dir, remove } = await tempDir('midge-remote-')
  port ??= await freePort()
  // mosquitto started as root drops to user mosquitto, which cannot read our temp dirs
  const daemon = await spawnMosquitto(await writeConf(dir, `user ${userInfo().username}\nlog_dest stderr\nlog_type all\n${extra}\nlistener ${port} 127.0.0.1\nallow_anonymous true\n${listenerExtra}\n`, 'mosquitto.conf'))
  onFinished(async () => { await daemon.stop(); await remove() })
  return { daemon, port, url: `mqtt://127.0.0.1:${port}`, dir }
}

/** Resolves once the remote holds `value` on the bridge's state topic (retained, so a late subscriber sees it). */
export async function bridgeState (remoteUrl: string, clientId: string, value: '0' | '1', onFinished: Finished, timeoutMs = 15_000): Promise<void> {
  const c = await connect(remoteUrl, { clientId: `state-${Math.random().toString(16).slice(2, 10)}` }, onFinished)
  const topic = `$SYS/broker/connection/${clientId}/state`
  const seen = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`bridge state ${value} not seen on ${topic}`)), timeoutMs)
    c.on('message', (tp, payload) => { if (tp === topic && payload.toString() === value) { clearTimeout(t); resolve() } })
  })
  await c.subscribeAsync(topic, { qos: 1 })
  await seen
  await c.endAsync()
}

/**
 * A scripted remote broker on a free port: `onPacket` answers each packet the bridge sends (`conn` counts the
 * bridge's connections from 1); closed when the test ends.
 */
export async function fakeRemote (protocolVersion: 4 | 5, onPacket: (p: mqttPacket.Packet, sock: net.Socket, conn: number) => void, onFinished: Finished): Promise<number> {
  const sockets = new Set<net.Socket>()
  let conns = 0
  const server = net.createServer(sock => {
    sockets.add(sock)
    const conn = ++conns
    const parser = mqttPacket.parser({ protocolVersion })
    parser.on('packet', (p: mqttPacket.Packet) => onPacket(p, sock, conn))
    sock.on('data', d => parser.parse(d))
    sock.on('error', () => {})
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  onFinished(() => new Promise<void>(resolve => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }))
  return (server.address() as net.AddressInfo).port
}
