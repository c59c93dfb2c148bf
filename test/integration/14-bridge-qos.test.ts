/**
 * What the remote sees of a message sent again, on the wire (a scripted remote; a real broker sets DUP per hop, so
 * its subscribers cannot show the bridge's): after a reconnect and after a SIGKILL of Midge, a QoS 1 message goes
 * again with DUP=1 and its packet id; a QoS 2 message past PUBREC gets only its PUBREL again while the remote keeps
 * the session, and its PUBLISH again (DUP=1) when the remote lost the session.
 */
import { test, expect } from 'vitest'
import mqttPacket from 'mqtt-packet'
import { connect } from '../helpers/mqtt.js'
import { fakeRemote } from '../helpers/bridge.js'
import { tempDir } from '../helpers/start-broker.js'
import { spawnMidge, writeConf, type Daemon } from '../helpers/processes.js'

interface Seen { conn: number, cmd: string, id?: number, dup?: boolean, payload?: string }

/** Waits until `seen` holds `n` packets of interest. */
async function packets (seen: Seen[], n: number): Promise<void> {
  await expect.poll(() => seen.length, { timeout: 15_000, interval: 20 }).toBeGreaterThanOrEqual(n)
}

async function midgeWithBridge (dir: string, port: number, qos: 1 | 2): Promise<{ conf: string, start: () => Promise<Daemon> }> {
  const conf = await writeConf(dir, [
    'listener 0 127.0.0.1', 'allow_anonymous true', 'persistence true', `persistence_location ${dir}/`,
    'connection cloud', `address 127.0.0.1:${port}`, 'remote_clientid pi', 'try_private false', 'notifications false',
    'restart_timeout 1', `topic up/# out ${qos}`
  ].join('\n'))
  return { conf, start: () => spawnMidge(conf, dir) }
}

test('QoS 1: resent with DUP=1 and the same packet id after a reconnect and after a SIGKILL', { timeout: 60_000 }, async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-bridge-dup-')
  onTestFinished(remove)
  const seen: Seen[] = []
  // 1st connection: takes the PUBLISH, closes without PUBACK; 2nd: keeps it unanswered (Midge is killed);
  // 3rd (after the restart): acknowledges it
  const port = await fakeRemote(4, (p, sock, conn) => {
    if (p.cmd === 'connect') sock.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: conn > 1 }))
    if (p.cmd === 'pingreq') sock.write(mqttPacket.generate({ cmd: 'pingresp' }))
    if (p.cmd !== 'publish') return
    seen.push({ conn, cmd: p.cmd, id: p.messageId, dup: p.dup, payload: p.payload.toString() })
    if (conn === 1) sock.destroy()
    if (conn >= 3) sock.write(mqttPacket.generate({ cmd: 'puback', messageId: p.messageId! }))
  }, onTestFinished)
  const m = await midgeWithBridge(dir, port, 1)
  let midge = await m.start()
  onTestFinished(async () => { await midge.kill('SIGKILL') })
  const pub = await connect(midge.url(), { clientId: 'pub' })
  await pub.publishAsync('up/a', 'a', { qos: 1 })
  pub.end(true)
  await packets(seen, 2)
  await midge.kill('SIGKILL')
  midge = await m.start()
  await packets(seen, 3)
  const id = seen[0]!.id
  expect(id).toBeGreaterThan(0)
  expect(seen.slice(0, 3)).toEqual([
    { conn: 1, cmd: 'publish', id, dup: false, payload: 'a' },
    { conn: 2, cmd: 'publish', id, dup: true, payload: 'a' },
    { conn: 3, cmd: 'publish', id, dup: true, payload: 'a' }
  ])
  // acknowledged: gone from the queue, a new message is not a resend
  const pub2 = await connect(midge.url(), { clientId: 'pub2' })
  await pub2.publishAsync('up/b', 'b', { qos: 1 })
  await pub2.endAsync()
  await packets(seen, 4)
  expect(seen.slice(3)).toEqual([{ conn: 3, cmd: 'publish', id: seen[3]!.id, dup: false, payload: 'b' }])
})

test('QoS 2: only the PUBREL goes again after PUBREC (reconnect, SIGKILL); the PUBLISH again when the remote lost the session', { timeout: 60_000 }, async ({ onTestFinished }) => {
  const { dir, remove } = await tempDir('midge-bridge-qos2-')
  onTestFinished(remove)
  const seen: Seen[] = []
  // 1: PUBLISH -> PUBREC, PUBREL -> close; 2 (session present): PUBREL unanswered, Midge killed;
  // 3 (after the restart, session present): PUBREL -> PUBCOMP; then message b: PUBLISH -> PUBREC, PUBREL -> close;
  // 4 (session lost): PUBLISH b again -> PUBREC, PUBREL -> PUBCOMP
  const port = await fakeRemote(4, (p, sock, conn) => {
    if (p.cmd === 'connect') sock.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: conn === 2 || conn === 3 }))
    if (p.cmd === 'pingreq') sock.write(mqttPacket.generate({ cmd: 'pingresp' }))
    if (p.cmd === 'publish') {
      seen.push({ conn, cmd: p.cmd, id: p.messageId, dup: p.dup, payload: p.payload.toString() })
      sock.write(mqttPacket.generate({ cmd: 'pubrec', messageId: p.messageId! }))
    }
    if (p.cmd === 'pubrel') {
      seen.push({ conn, cmd: p.cmd, id: p.messageId })
      if (conn === 1 || (conn === 3 && seen.some(s => s.payload === 'b'))) sock.destroy()
      else if (conn >= 3) sock.write(mqttPacket.generate({ cmd: 'pubcomp', messageId: p.messageId }))
    }
  }, onTestFinished)
  const m = await midgeWithBridge(dir, port, 2)
  let midge = await m.start()
  onTestFinished(async () => { await midge.kill('SIGKILL') })
  const pub = await connect(midge.url(), { clientId: 'pub' })
  await pub.publishAsync('up/a', 'a', { qos: 2 })
  pub.end(true)
  await packets(seen, 3)
  await midge.kill('SIGKILL')
  midge = await m.start()
  await packets(seen, 4)
  const a = seen[0]!.id
  expect(seen.slice(0, 4)).toEqual([
    { conn: 1, cmd: 'publish', id: a, dup: false, payload: 'a' },
    { conn: 1, cmd: 'pubrel', id: a },
    { conn: 2, cmd: 'pubrel', id: a },
    { conn: 3, cmd: 'pubrel', id: a }
  ])
  const pub2 = await connect(midge.url(), { clientId: 'pub2' })
  await pub2.publishAsync('up/b', 'b', { qos: 2 })
  await pub2.endAsync()
  await packets(seen, 8)
  const b = seen[4]!.id
  expect(seen.slice(4, 8)).toEqual([
    { conn: 3, cmd: 'publish', id: b, dup: false, payload: 'b' },
    { conn: 3, cmd: 'pubrel', id: b },
    { conn: 4, cmd: 'publish', id: b, dup: true, payload: 'b' },
    { conn: 4, cmd: 'pubrel', id: b }
  ])
  // completed: nothing more is sent after a restart
  await midge.stop()
  midge = await m.start()
  await midge.logged(/Bridge cloud: connected to 127\.0\.0\.1:\d+ as pi .*, 0 queued\)/)
  expect(seen).toHaveLength(8)
})
