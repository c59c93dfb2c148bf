/**
 * Helpers for the security tests: SUBACK codes and message waits; child processes are re-exported from
 * spawn-midge.ts and proc.ts under the names these tests use.
 */
import type { MqttClient } from 'mqtt'

// child processes live in spawn-midge.ts and proc.ts; the security tests use them under these names
export { spawnMidge, spawnMosquitto, freePort, midge, MIDGE_MAIN as MAIN, type Daemon } from './spawn-midge.js'
export { run as runCmd, PYTHON, type RunResult as Done } from './proc.js'

export async function subackCodes (c: MqttClient, subs: Record<string, { qos: 0 | 1 | 2 }>): Promise<number[]> {
  try {
    return (await c.subscribeAsync(subs)).map(g => g.qos)
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted
    if (!granted) throw err
    return granted
  }
}

/** The next message on an MQTT.js client (events.once does not type-check against MqttClient). */
export function nextMessage (c: MqttClient): Promise<[string, Buffer, { qos: number, retain: boolean }]> {
  return new Promise(resolve => c.once('message', (topic, payload, packet) => resolve([topic, payload, packet])))
}

/** The next 'error' of an MQTT.js client. */
export function nextError (c: MqttClient): Promise<Error> {
  return new Promise(resolve => c.once('error', err => resolve(err)))
}
