/** Broker.close within its deadline: a step that hangs is cut, and the log names it. */
import { test, expect, vi } from 'vitest'
import { startTestBroker } from '../helpers/start-broker.js'

test('the stop deadline logs the step it cut and close() still resolves', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  // an auth backend whose close never ends: the last step of the stop
  const auth = b.broker.auth as { close: () => Promise<void> }
  const realClose = auth.close.bind(auth)
  onTestFinished(() => realClose())
  auth.close = () => new Promise<void>(() => {})
  const warn = vi.spyOn(b.broker.log, 'warn')
  const started = Date.now()
  await b.broker.close(300)
  expect(Date.now() - started).toBeLessThan(2_000)
  const cut = warn.mock.calls.find(c => typeof c[1] === 'string' && c[1].startsWith('stop deadline'))
  expect(cut?.[0]).toEqual({ step: 'close the auth backends', timeoutMs: 300 })
  expect(cut?.[1]).toBe('stop deadline (300 ms) reached while trying to close the auth backends; the later steps were skipped')
})

test('a stop within the deadline logs no cut', async ({ onTestFinished }) => {
  const b = await startTestBroker()
  onTestFinished(() => b.close())
  const warn = vi.spyOn(b.broker.log, 'warn')
  await b.broker.close()
  expect(warn.mock.calls.filter(c => typeof c[1] === 'string' && c[1].startsWith('stop deadline'))).toEqual([])
})
