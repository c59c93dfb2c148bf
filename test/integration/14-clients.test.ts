/** Real third-party clients: Debian's mosquitto_pub/sub and paho-mqtt (Python), over TCP and WebSocket. */
import { test, expect } from 'vitest'
import { startTestBroker } from '../helpers/start-broker.js'
import { connect, collect } from '../helpers/mqtt.js'
import { run, PYTHON } from '../helpers/processes.js'

const CONF = 'listener 0 127.0.0.1\nlistener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\n'

test('mosquitto_sub receives what mosquitto_pub sends, at QoS 0, 1 and 2, with a retained message', async ({ onTestFinished }) => {
  const b = await startTestBroker(CONF)
  onTestFinished(() => b.close())
  const port = String(b.port('tcp'))
  const pub0 = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-t', 'sensors/retained', '-m', 'kept', '-r', '-q', '1'])
  expect(pub0.code).toBe(0)
  // -C 4: exit after 4 messages; -v: "topic payload". Publish once the broker has its subscription (an event, not a sleep).
  const subscribed = new Promise<void>(resolve => b.broker.aedes.on('subscribe', (_subs, client) => { if (client.id === 'msub') resolve() }))
  const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-t', 'sensors/#', '-q', '2', '-C', '4', '-v', '-i', 'msub'])
  await subscribed
  for (const q of ['0', '1', '2']) {
    const r = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-t', `sensors/q${q}`, '-m', `qos${q}`, '-q', q])
    expect(r.code).toBe(0)
  }
  const out = await sub
  expect(out.code).toBe(0)
  expect(out.stdout.trim().split('\n')).toEqual(['sensors/retained kept', 'sensors/q0 qos0', 'sensors/q1 qos1', 'sensors/q2 qos2'])
})

const PAHO = `
import sys, json, threading
import paho.mqtt.client as mqtt
host, port, transport = sys.argv[1], int(sys.argv[2]), sys.argv[3]
done = threading.Event(); got = []
def on_connect(c, u, flags, rc):
    print("connack", rc, flush=True)
    c.subscribe("dev42/commands", qos=1)
def on_subscribe(c, u, mid, granted):
    print("suback", list(granted), flush=True)
    c.publish("dev42/telemetry", json.dumps({"temp": 21.5}), qos=1)
def on_message(c, u, msg):
    print("message", msg.topic, msg.payload.decode(), msg.qos, flush=True)
    done.set()
c = mqtt.Client(client_id="paho-" + transport, transport=transport)
if transport == "websockets":
    c.ws_set_options(path="/mqtt")
c.on_connect = on_connect; c.on_subscribe = on_subscribe; c.on_message = on_message
c.connect(host, port, keepalive=60)
c.loop_start()
ok = done.wait(10)
c.disconnect(); c.loop_stop()
sys.exit(0 if ok else 1)
`

test.each(['tcp', 'websockets'])('paho-mqtt (Python) over %s: telemetry up, commands down, QoS 1', async (transport) => {
  const b = await startTestBroker(CONF)
  try {
    const app = await connect(b.url('tcp'), { clientId: 'backend' })
    const g = collect(app)
    await app.subscribeAsync('+/telemetry', { qos: 1 })
    const port = String(b.port(transport === 'tcp' ? 'tcp' : 'ws'))
    const py = run(PYTHON, ['-c', PAHO, '127.0.0.1', port, transport])
    const [tele] = await g.take(1)
    expect([tele!.topic, JSON.parse(tele!.payload), tele!.qos]).toEqual(['dev42/telemetry', { temp: 21.5 }, 1])
    await app.publishAsync('dev42/commands', 'reboot', { qos: 1 })
    const out = await py
    expect(out.stderr).toBe('')
    expect(out.stdout.trim().split('\n')).toEqual(['connack 0', 'suback [1]', 'message dev42/commands reboot 1'])
    expect(out.code).toBe(0)
    await app.endAsync()
  } finally { await b.close() }
})
