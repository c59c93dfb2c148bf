/**
 * Bridge throughput: a publisher on the local broker, a subscriber on a remote mosquitto, the local broker's bridge
 * in between; Midge's bridge against mosquitto's own, at QoS 0 and 1, with and without persistence. Every run starts
 * fresh brokers on loopback; the figure is messages per second from the first publish to the last one received on
 * the remote (median of the runs), with how many arrived.
 *
 *   npm run build && node dist/bench/bridge.js [--messages 20000] [--runs 3]
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { freePort, MIDGE_MAIN, mosquittoVersion, machineTicks, stealPct } from './brokers.js'

type Local = 'midge' | 'mosquitto'

interface Result { msgsPerSec: number, received: number }

function arg (name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}

async function waitListening (port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) throw new Error('broker exited during start-up')
    try {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 1000 })
      await c.endAsync()
      return
    } catch {
      if (Date.now() > deadline) throw new Error(`no broker on ${port}`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
}

function start (kind: Local | 'remote', conf: string, dir: string): ChildProcess {
  const path = join(dir, `${kind}.conf`)
  // as root, mosquitto would switch to the `mosquitto` user and lose access to the temp dir; Midge ignores `user`
  writeFileSync(path, `${process.getuid?.() === 0 ? 'user root\n' : ''}${conf}`)
  const child = kind === 'midge'
    ? spawn(process.execPath, [MIDGE_MAIN, '-c', path], { stdio: ['ignore', 'ignore', 'inherit'] })
    : spawn('mosquitto', ['-c', path], { stdio: ['ignore', 'ignore', 'ignore'] })
  return child
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

async function once (local: Local, qos: 0 | 1, persistence: boolean, messages: number): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'midge-bench-bridge-'))
  const remotePort = await freePort()
  const remote = start('remote', `log_dest none\nlistener ${remotePort} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n`, dir)
  const children = [remote]
  try {
    await waitListening(remotePort, remote)
    // only now: a port that was free a moment ago could otherwise be handed out twice
    const localPort = await freePort()
    const id = `bench-${local}`
    const lines = [
      local === 'midge' ? 'log_type error' : 'log_dest none', 'connection_messages false', `persistence ${persistence}`, `persistence_location ${dir}/`,
      'max_queued_messages 0', `listener ${localPort} 127.0.0.1`, 'allow_anonymous true',
      'connection remote', `address 127.0.0.1:${remotePort}`, `remote_clientid ${id}`, 'cleansession true', 'restart_timeout 1',
      `topic bench/# out ${qos}`
    ]
    const lc = start(local, `${lines.join('\n')}\n`, dir)
    children.push(lc)
    await waitListening(localPort, lc)
    const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${remotePort}`, { reconnectPeriod: 0 })
    // the bridge is up once the remote holds its state 1
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${local}: the bridge did not connect within 15 s`)), 15_000)
      sub.on('message', (tp, p) => { if (tp.startsWith('$SYS/broker/connection/') && p.toString() === '1') { clearTimeout(t); resolve() } })
      void sub.subscribeAsync(`$SYS/broker/connection/${id}/state`, { qos: 1 })
    })
    let received = 0
    let last = 0
    const done = new Promise<void>(resolve => {
      sub.on('message', t => {
        if (!t.startsWith('bench/')) return
        received++
        last = performance.now()
        if (received === messages) resolve()
      })
    })
    await sub.subscribeAsync('bench/#', { qos })
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${localPort}`, { reconnectPeriod: 0 })
    const payload = Buffer.alloc(64, 'x')
    const t0 = performance.now()
    const acks: Array<Promise<unknown>> = []
    for (let i = 0; i < messages; i++) {
      acks.push(pub.publishAsync(`bench/${i % 10}`, payload, { qos }))
      // let the socket drain now and then instead of buffering everything at once
      if (i % 500 === 499) await new Promise(resolve => setImmediate(resolve))
    }
    await Promise.all(acks)
    // QoS 0 may lose messages: stop waiting 2 s after the last one arrived (or 10 s after the last publish)
    const published = performance.now()
    await Promise.race([done, new Promise<void>(resolve => {
      const t = setInterval(() => {
        const now = performance.now()
        if ((last > 0 && now - last > 2000) || (last === 0 && now - published > 10_000)) { clearInterval(t); resolve() }
      }, 100)
      void done.then(() => clearInterval(t))
    })])
    await pub.endAsync()
    await sub.endAsync()
    return { msgsPerSec: received === 0 ? 0 : Math.round(received / ((last - t0) / 1000)), received }
  } finally {
    for (const c of children.reverse()) await stop(c)
    rmSync(dir, { recursive: true, force: true })
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

const messages = arg('messages', 20_000)
const runs = arg('runs', 3)
console.log(`bridge throughput: ${messages} messages of 64 bytes per run, ${runs} runs, remote mosquitto ${mosquittoVersion() ?? '?'}; msg/s from the first publish to the last arrival (median), received`)
for (const persistence of [false, true]) {
  for (const qos of [0, 1] as const) {
    for (const local of ['mosquitto', 'midge'] as const) {
      const ticks = machineTicks()
      const rs: Result[] = []
      for (let r = 0; r < runs; r++) rs.push(await once(local, qos, persistence, messages))
      const steal = stealPct(ticks, machineTicks())
      console.log(`persistence ${String(persistence).padEnd(5)} QoS ${qos} ${local.padEnd(9)} ${String(median(rs.map(x => x.msgsPerSec))).padStart(7)} msg/s  received ${rs.map(x => x.received).join('/')}  steal ${steal?.toFixed(1) ?? '?'}%`)
    }
  }
}
