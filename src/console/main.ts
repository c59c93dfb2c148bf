/**
 * Midge web console: plain TypeScript, bundled by esbuild (build.mjs). Everything it shows comes from
 * the admin API (/api/v1) with the session cookie (HttpOnly: this script never sees it) and the CSRF token the
 * API returns at login, kept in memory only. The WebSocket panel loads MQTT.js's browser build on first use and
 * connects with the user name and password typed into it; they are never stored.
 */

// ------------------------------------------------------------------------------------------ API access

class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) { super(message) }
}

let csrf = ''

async function api<T = any> (method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf
  const r = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' })
  if (r.status === 204) return undefined as T
  // a body that is not JSON (a proxy's error page) still ends in an ApiError with the HTTP status below
  const json = await r.json().catch(() => ({}))
  if (!r.ok) {
    const e = json.error ?? {}
    if (r.status === 401 && path !== '/session') showLogin('Your session ended; log in again.')
    throw new ApiError(r.status, e.code ?? 'HTTP', e.message ?? r.statusText)
  }
  return json as T
}

// ------------------------------------------------------------------------------------------- DOM helpers

type Child = Node | string | null | undefined | false
type Attrs = Record<string, string | boolean | ((ev: Event) => void) | undefined>

function h<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue
    if (typeof v === 'function') el.addEventListener(k.slice(2), v)
    else if (v === true) el.setAttribute(k, '')
    else el.setAttribute(k, v)
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c)
  return el
}

function $ <T extends HTMLElement = HTMLInputElement> (id: string): T {
  return document.getElementById(id) as T
}

function field (label: string, input: HTMLElement): HTMLElement {
  return h('label', { class: 'field' }, h('span', {}, label), input)
}

function table (headers: string[], rows: HTMLElement[], id: string, empty: string): HTMLElement {
  return h('div', { class: 'table-wrap' },
    h('table', { id },
      h('thead', {}, h('tr', {}, ...headers.map(x => h('th', {}, x)))),
      h('tbody', {}, ...(rows.length > 0 ? rows : [h('tr', { class: 'empty' }, h('td', { colspan: String(headers.length) }, empty))]))))
}

function td (text: string, label: string): HTMLElement {
  return h('td', { 'data-label': label }, text)
}

let noticeTimer: number | undefined
function notice (text: string, kind: 'ok' | 'error' = 'ok'): void {
  const n = $('notice')
  n.textContent = text
  n.className = `notice ${kind}`
  window.clearTimeout(noticeTimer)
  noticeTimer = window.setTimeout(() => { n.className = 'notice' }, 5000)
}

async function act (fn: () => Promise<unknown>, ok?: string): Promise<void> {
  try {
    await fn()
    if (ok) notice(ok)
  } catch (err) {
    notice(err instanceof ApiError ? `${err.message} (${err.code})` : String(err), 'error')
  }
}

function ago (iso: string | null): string {
  if (!iso) return ''
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min`
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
  return `${Math.floor(s / 86400)} d`
}

// ---------------------------------------------------------------------------------------------- login

const root = document.getElementById('root')!
let pollTimer: number | undefined

function showLogin (message = ''): void {
  window.clearInterval(pollTimer)
  csrf = ''
  const err = h('p', { class: 'error', id: 'login-error', role: 'alert' }, message)
  const form = h('form', { class: 'login', id: 'login-form' },
    h('h1', {}, 'Midge'),
    h('p', { class: 'muted' }, 'Log in with the admin credential (admin_password_file).'),
    field('User', h('input', { id: 'login-user', name: 'username', autocomplete: 'username', required: true })),
    field('Password', h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    h('button', { type: 'submit', id: 'login-submit' }, 'Log in'),
    err)
  form.addEventListener('submit', ev => {
    ev.preventDefault()
    const username = $('login-user').value
    const password = $('login-password').value
    api<{ csrfToken: string, user: string }>('POST', '/session', { username, password }).then(s => {
      csrf = s.csrfToken
      showApp(s.user)
    }, (e: ApiError) => { err.textContent = e.code === 'MIDGE_ERR_ADMIN_RATE_LIMITED' ? e.message : 'Wrong user name or password.' })
  })
  root.replaceChildren(form)
  $('login-user').focus()
}

// ------------------------------------------------------------------------------------------------- app

const TABS = ['overview', 'clients', 'bridges', 'users', 'acl', 'retained', 'websocket'] as const
type Tab = typeof TABS[number]
const TAB_NAMES: Record<Tab, string> = { overview: 'Overview', clients: 'Clients', bridges: 'Bridges', users: 'Users', acl: 'ACL', retained: 'Retained', websocket: 'WebSocket' }
let current: Tab = 'overview'

function showApp (user: string): void {
  const nav = h('nav', { id: 'tabs' }, ...TABS.map(t => h('button', { type: 'button', id: `tab-${t}`, 'data-tab': t, onclick: () => { select(t) } }, TAB_NAMES[t])))
  root.replaceChildren(
    h('header', {},
      h('strong', { class: 'brand' }, 'Midge'),
      nav,
      h('span', { class: 'who' }, user, ' ', h('button', { type: 'button', id: 'logout', class: 'link', onclick: () => { void logout() } }, 'Log out'))),
    h('div', { id: 'notice', class: 'notice', role: 'status' }),
    ...TABS.map(t => h('section', { id: `view-${t}`, hidden: true })))
  buildOverview()
  buildUsers()
  buildAcl()
  buildRetained()
  buildWebSocket()
  buildClients()
  buildBridges()
  select('overview')
  window.clearInterval(pollTimer)
  pollTimer = window.setInterval(() => { void tick() }, 2000)
  void tick()
}

function select (t: Tab): void {
  current = t
  for (const x of TABS) {
    $(`view-${x}`).hidden = x !== t
    $(`tab-${x}`).classList.toggle('active', x === t)
  }
  if (t === 'clients') void refreshClients()
  if (t === 'bridges') void refreshBridges()
  if (t === 'users') void refreshUsers()
  if (t === 'acl') void refreshAcl()
  if (t === 'retained') void refreshRetained()
}

async function logout (): Promise<void> {
  // a session that already ended cannot be deleted; the page logs out either way
  await api('DELETE', '/session').catch(() => {})
  showLogin('Logged out.')
}

async function tick (): Promise<void> {
  if (document.hidden) return
  // a failed poll is retried by the next tick; an ended session already showed the login form (api())
  await refreshStats().catch(() => {})
  if (current === 'clients') await refreshClients().catch(() => {})
  if (current === 'bridges') await refreshBridges().catch(() => {})
}

// -------------------------------------------------------------------------------------------- overview

interface Sample { t: number, connections: number, inRate: number, outRate: number }
const samples: Sample[] = []
let lastStats: { t: number, publishReceived: number, publishSent: number } | undefined

function buildOverview (): void {
  const card = (id: string, label: string) => h('div', { class: 'card' }, h('span', { class: 'label' }, label), h('span', { class: 'value', id }, '–'))
  $('view-overview').append(
    h('div', { class: 'cards' },
      card('stat-connections', 'Connected clients'),
      card('stat-in', 'Messages in /s'),
      card('stat-out', 'Messages out /s'),
      card('stat-subscriptions', 'Subscriptions'),
      card('stat-retained', 'Retained'),
      card('stat-uptime', 'Uptime')),
    h('div', { class: 'chart-box' },
      h('canvas', { id: 'chart', width: '720', height: '200', 'aria-label': 'Connections and message rates, last 2 minutes' }),
      h('p', { class: 'legend' }, h('span', { class: 'k in' }, 'in /s'), h('span', { class: 'k out' }, 'out /s'), h('span', { class: 'k conn' }, 'connections'))),
    h('div', { id: 'listeners' }))
}

async function refreshStats (): Promise<void> {
  const s = await api('GET', '/stats')
  const now = Date.now()
  let inRate = 0; let outRate = 0
  if (lastStats) {
    const dt = (now - lastStats.t) / 1000
    inRate = Math.max(0, (s.publishReceived - lastStats.publishReceived) / dt)
    outRate = Math.max(0, (s.publishSent - lastStats.publishSent) / dt)
  }
  lastStats = { t: now, publishReceived: s.publishReceived, publishSent: s.publishSent }
  samples.push({ t: now, connections: s.clientsConnected, inRate, outRate })
  if (samples.length > 60) samples.shift()
  $('stat-connections').textContent = String(s.clientsConnected)
  $('stat-in').textContent = inRate.toFixed(1)
  $('stat-out').textContent = outRate.toFixed(1)
  $('stat-subscriptions').textContent = String(s.subscriptions)
  $('stat-retained').textContent = String(s.retainedCount)
  $('stat-uptime').textContent = ago(new Date(now - s.uptimeSeconds * 1000).toISOString())
  $('listeners').replaceChildren(table(['Listener', 'Port', 'Connections'],
    (s.listeners as Array<{ id: string, port: number, connections: number }>).map(l => h('tr', {}, td(l.id, 'Listener'), td(String(l.port), 'Port'), td(String(l.connections), 'Connections'))),
    'listeners-table', 'No listeners'))
  drawChart()
}

function drawChart (): void {
  const c = $<HTMLCanvasElement>('chart')
  const w = c.clientWidth || 720
  const ht = c.clientHeight || 200
  const dpr = window.devicePixelRatio || 1
  if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(ht * dpr) }
  const g = c.getContext('2d')
  if (!g) return
  g.setTransform(dpr, 0, 0, dpr, 0, 0)
  g.clearRect(0, 0, w, ht)
  const pad = 24
  const maxRate = Math.max(1, ...samples.map(s => Math.max(s.inRate, s.outRate)))
  const maxConn = Math.max(1, ...samples.map(s => s.connections))
  g.strokeStyle = '#d0d7de'
  g.lineWidth = 1
  g.beginPath(); g.moveTo(pad, ht - pad); g.lineTo(w - 4, ht - pad); g.stroke()
  g.fillStyle = '#57606a'
  g.font = '11px system-ui, sans-serif'
  g.fillText(`${maxRate.toFixed(1)}/s`, 2, 12)
  g.fillText(`${maxConn} conn`, w - 60, 12)
  const line = (color: string, value: (s: Sample) => number, max: number): void => {
    if (samples.length < 2) return
    g.strokeStyle = color
    g.lineWidth = 2
    g.beginPath()
    samples.forEach((s, i) => {
      const x = pad + (i / 59) * (w - pad - 4)
      const y = ht - pad - (value(s) / max) * (ht - pad - 18)
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y)
    })
    g.stroke()
  }
  line('#0969da', s => s.inRate, maxRate)
  line('#1a7f37', s => s.outRate, maxRate)
  line('#bf8700', s => s.connections, maxConn)
}

// --------------------------------------------------------------------------------------------- clients

interface ClientRow { clientId: string, username: string | null, address: string | null, listener: string | null, connectedSince: string | null, subscriptions: Array<{ topic: string, qos: number }>, queuedMessages: number }

function buildClients (): void {
  $('view-clients').append(
    h('div', { class: 'bar' }, h('h2', {}, 'Connected clients'), h('button', { type: 'button', id: 'clients-refresh', onclick: () => { void refreshClients() } }, 'Refresh')),
    h('div', { id: 'clients-list' }))
}

async function refreshClients (): Promise<void> {
  const { clients } = await api<{ clients: ClientRow[] }>('GET', '/clients')
  const rows = clients.map(c => h('tr', { 'data-client': c.clientId },
    td(c.clientId, 'Client id'),
    td(c.username ?? '(anonymous)', 'User'),
    td(c.address ?? '', 'Address'),
    td(c.listener ?? '', 'Listener'),
    td(ago(c.connectedSince), 'Connected'),
    td(c.subscriptions.map(s => `${s.topic} (${s.qos})`).join(', '), 'Subscriptions'),
    td(String(c.queuedMessages), 'Queued'),
    h('td', {}, h('button', {
      type: 'button',
      class: 'danger',
      'data-kick': c.clientId,
      onclick: () => {
        if (!window.confirm(`Disconnect ${c.clientId}?`)) return
        void act(async () => { await api('DELETE', `/clients/${encodeURIComponent(c.clientId)}`); await refreshClients() }, `Disconnected ${c.clientId}.`)
      }
    }, 'Disconnect'))))
  $('clients-list').replaceChildren(table(['Client id', 'User', 'Address', 'Listener', 'Connected', 'Subscriptions', 'Queued', ''], rows, 'clients-table', 'No clients connected'))
}

// --------------------------------------------------------------------------------------------- bridges

interface BridgeRow { name: string, state: string, remote?: string, queued: number, sent: number, received: number, dropped: number, reconnects: number, lastError?: string }

function buildBridges (): void {
  $('view-bridges').append(h('div', { class: 'bar' }, h('h2', {}, 'Bridges')), h('div', { id: 'bridges-list' }))
}

async function refreshBridges (): Promise<void> {
  const { bridges } = await api<{ bridges: BridgeRow[] }>('GET', '/bridges')
  const rows = bridges.map(b => h('tr', { 'data-bridge': b.name },
    td(b.name, 'Bridge'),
    td(b.state === 'connected' ? `connected to ${b.remote ?? ''}` : b.state, 'State'),
    td(String(b.queued), 'Queued'),
    td(String(b.sent), 'Sent'),
    td(String(b.received), 'Received'),
    td(String(b.dropped), 'Dropped'),
    td(String(b.reconnects), 'Reconnects'),
    td(b.lastError ?? '', 'Last error')))
  $('bridges-list').replaceChildren(table(['Bridge', 'State', 'Queued', 'Sent', 'Received', 'Dropped', 'Reconnects', 'Last error'], rows, 'bridges-table', 'No bridges configured (connection blocks in the config file)'))
}

// ----------------------------------------------------------------------------------------------- users

function buildUsers (): void {
  const form = h('form', { id: 'user-form', class: 'inline' },
    field('User name', h('input', { id: 'user-name', required: true, autocomplete: 'off' })),
    field('Password', h('input', { id: 'user-password', type: 'password', required: true, autocomplete: 'new-password' })),
    h('button', { type: 'submit', id: 'user-add' }, 'Add user'))
  form.addEventListener('submit', ev => {
    ev.preventDefault()
    const username = $('user-name').value
    void act(async () => {
      await api('POST', '/users', { username, password: $('user-password').value })
      form.reset()
      await refreshUsers()
    }, `User ${username} created.`)
  })
  $('view-users').append(h('h2', {}, 'MQTT users'), h('p', { class: 'muted' }, 'Stored in the broker\'s password_file (mosquitto_passwd format); changes apply at once.'), form, h('div', { id: 'users-list' }))
}

/** An inline password form in the user's row (not window.prompt: that would show the password in clear). */
function passwordForm (button: HTMLElement, username: string): void {
  const cell = button.parentElement!
  if (cell.querySelector('form')) return
  const input = h('input', { type: 'password', autocomplete: 'new-password', required: true, placeholder: 'new password', 'aria-label': `New password for ${username}`, class: 'new-password' })
  const form = h('form', { class: 'row-form' }, input, h('button', { type: 'submit' }, 'Save'), h('button', { type: 'button', onclick: () => { form.remove() } }, 'Cancel'))
  form.addEventListener('submit', ev => {
    ev.preventDefault()
    void act(async () => { await api('PATCH', `/users/${encodeURIComponent(username)}`, { password: input.value }); form.remove() }, `Password of ${username} changed.`)
  })
  cell.append(form)
  input.focus()
}

async function refreshUsers (): Promise<void> {
  const { users } = await api<{ users: Array<{ username: string, disabled: boolean }> }>('GET', '/users')
  const rows = users.map(u => h('tr', { 'data-user': u.username },
    td(u.username, 'User'),
    td(u.disabled ? 'disabled' : 'active', 'Status'),
    h('td', { class: 'actions' },
      h('button', { type: 'button', 'data-password': u.username, onclick: (ev: Event) => { passwordForm(ev.target as HTMLElement, u.username) } }, 'Password'),
      h('button', { type: 'button', onclick: () => { void act(async () => { await api('PATCH', `/users/${encodeURIComponent(u.username)}`, { disabled: !u.disabled }); await refreshUsers() }) } }, u.disabled ? 'Enable' : 'Disable'),
      h('button', {
        type: 'button',
        class: 'danger',
        onclick: () => {
          if (window.confirm(`Delete ${u.username} and the user's ACL rules?`)) void act(async () => { await api('DELETE', `/users/${encodeURIComponent(u.username)}`); await refreshUsers() }, `User ${u.username} deleted.`)
        }
      }, 'Delete'))))
  $('users-list').replaceChildren(table(['User', 'Status', ''], rows, 'users-table', 'No users'))
}

// ------------------------------------------------------------------------------------------------- ACL

function buildAcl (): void {
  const choice = (id: string, values: string[]) => h('select', { id }, ...values.map(v => h('option', { value: v }, v)))
  const form = h('form', { id: 'acl-form', class: 'inline' },
    field('Kind', choice('acl-kind', ['topic', 'pattern'])),
    field('User (empty: anonymous)', h('input', { id: 'acl-user', autocomplete: 'off' })),
    field('Access', choice('acl-access', ['readwrite', 'read', 'write', 'deny'])),
    field('Topic filter', h('input', { id: 'acl-topic', required: true, autocomplete: 'off', placeholder: 'sensors/#' })),
    h('button', { type: 'submit', id: 'acl-add' }, 'Add rule'))
  form.addEventListener('submit', ev => {
    ev.preventDefault()
    const kind = $<HTMLSelectElement>('acl-kind').value
    const user = $('acl-user').value.trim()
    const body: Record<string, unknown> = { kind, access: $<HTMLSelectElement>('acl-access').value, topic: $('acl-topic').value }
    if (kind === 'topic' && user !== '') body.user = user
    void act(async () => { await api('POST', '/acl/rules', body); $('acl-topic').value = ''; await refreshAcl() }, 'Rule added.')
  })
  $('view-acl').append(h('h2', {}, 'ACL rules'), h('p', { class: 'muted' }, 'Stored in the broker\'s acl_file. Pattern rules apply to every client (%u = user name, %c = client id). What no rule grants is denied.'), form, h('div', { id: 'acl-list' }))
}

async function refreshAcl (): Promise<void> {
  const { rules } = await api<{ rules: Array<{ id: string, kind: string, user: string | null, access: string, topic: string }> }>('GET', '/acl/rules')
  const rows = rules.map(r => h('tr', { 'data-rule': r.id },
    td(r.kind, 'Kind'),
    td(r.kind === 'pattern' ? '(everyone)' : r.user ?? '(anonymous)', 'User'),
    td(r.access, 'Access'),
    td(r.topic, 'Topic'),
    h('td', {}, h('button', { type: 'button', class: 'danger', onclick: () => { void act(async () => { await api('DELETE', `/acl/rules/${r.id}`); await refreshAcl() }, 'Rule removed.') } }, 'Remove'))))
  $('acl-list').replaceChildren(table(['Kind', 'User', 'Access', 'Topic', ''], rows, 'acl-table', 'No rules'))
}

// -------------------------------------------------------------------------------------------- retained

function buildRetained (): void {
  const form = h('form', { id: 'retained-form', class: 'inline' },
    field('Topic filter', h('input', { id: 'retained-filter', value: '#', autocomplete: 'off' })),
    h('button', { type: 'submit' }, 'Show'))
  form.addEventListener('submit', ev => { ev.preventDefault(); void act(refreshRetained) })
  $('view-retained').append(h('h2', {}, 'Retained messages'), form, h('div', { id: 'retained-list' }))
}

async function refreshRetained (): Promise<void> {
  const filter = $('retained-filter').value || '#'
  const r = await api<{ messages: Array<{ topic: string, payload: string, encoding: string, bytes: number, qos: number }>, truncated: boolean }>('GET', `/retained?filter=${encodeURIComponent(filter)}`)
  const rows = r.messages.map(m => h('tr', {},
    td(m.topic, 'Topic'),
    h('td', { 'data-label': 'Payload', class: 'payload' }, m.encoding === 'base64' ? `(base64) ${m.payload}` : m.payload),
    td(String(m.bytes), 'Bytes'),
    td(String(m.qos), 'QoS'),
    h('td', {}, h('button', { type: 'button', class: 'danger', onclick: () => { void act(async () => { await api('DELETE', `/retained?topic=${encodeURIComponent(m.topic)}`); await refreshRetained() }, `Deleted ${m.topic}.`) } }, 'Delete'))))
  $('retained-list').replaceChildren(table(['Topic', 'Payload', 'Bytes', 'QoS', ''], rows, 'retained-table', 'No retained messages'), r.truncated ? h('p', { class: 'muted' }, 'Only the first 100 are shown; narrow the filter.') : '')
}

// ----------------------------------------------------------------------------------- WebSocket client

interface MqttClientLike {
  on (ev: string, fn: (...args: any[]) => void): void
  subscribe (filter: string, opts: { qos: number }, cb: (err: Error | null, granted?: Array<{ topic: string, qos: number }>) => void): void
  publish (topic: string, payload: string, opts: { qos: number, retain: boolean }, cb: (err?: Error) => void): void
  end (force?: boolean): void
}

/** Served from dist/console/ (copied from the installed mqtt package at build time); loaded on first connect. */
const MQTT_BUNDLE = '/console/mqtt.esm.js'
let mqttClient: MqttClientLike | undefined

function buildWebSocket (): void {
  const defaultUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mqtt`
  const connectForm = h('form', { id: 'ws-connect-form', class: 'inline' },
    field('URL', h('input', { id: 'ws-url', value: defaultUrl, autocomplete: 'off' })),
    field('User', h('input', { id: 'ws-user', autocomplete: 'off' })),
    field('Password', h('input', { id: 'ws-password', type: 'password', autocomplete: 'off' })),
    field('Client id', h('input', { id: 'ws-client-id', value: `midge-console-${Math.random().toString(16).slice(2, 8)}`, autocomplete: 'off' })),
    h('button', { type: 'submit', id: 'ws-connect' }, 'Connect'),
    h('button', { type: 'button', id: 'ws-disconnect', disabled: true, onclick: () => { mqttClient?.end(true) } }, 'Disconnect'))
  connectForm.addEventListener('submit', ev => { ev.preventDefault(); void wsConnect() })
  const subForm = h('form', { id: 'ws-sub-form', class: 'inline' },
    field('Subscribe to', h('input', { id: 'ws-sub-topic', value: '#', autocomplete: 'off' })),
    field('QoS', qosSelect('ws-sub-qos')),
    h('button', { type: 'submit', id: 'ws-subscribe', disabled: true }, 'Subscribe'))
  subForm.addEventListener('submit', ev => {
    ev.preventDefault()
    const filter = $('ws-sub-topic').value
    mqttClient?.subscribe(filter, { qos: Number($<HTMLSelectElement>('ws-sub-qos').value) }, (err, granted) => {
      if (err) { log(`subscribe ${filter} failed: ${err.message}`); return }
      const q = granted?.[0]?.qos
      log(q === 128 ? `subscription to ${filter} refused (0x80)` : `subscribed to ${filter} (QoS ${q ?? '?'})`)
    })
  })
  const pubForm = h('form', { id: 'ws-pub-form', class: 'inline' },
    field('Topic', h('input', { id: 'ws-pub-topic', autocomplete: 'off' })),
    field('Payload', h('input', { id: 'ws-pub-payload', autocomplete: 'off' })),
    field('QoS', qosSelect('ws-pub-qos')),
    h('label', { class: 'check' }, h('input', { id: 'ws-pub-retain', type: 'checkbox' }), 'Retain'),
    h('button', { type: 'submit', id: 'ws-publish', disabled: true }, 'Publish'))
  pubForm.addEventListener('submit', ev => {
    ev.preventDefault()
    const topic = $('ws-pub-topic').value
    mqttClient?.publish(topic, $('ws-pub-payload').value, { qos: Number($<HTMLSelectElement>('ws-pub-qos').value), retain: $('ws-pub-retain').checked }, err => {
      log(err ? `publish to ${topic} failed: ${err.message}` : `published to ${topic}`)
    })
  })
  $('view-websocket').append(
    h('h2', {}, 'WebSocket client'),
    h('p', { class: 'muted' }, 'An MQTT client in this page (MQTT.js over WebSocket). It logs in as the MQTT user you type here; nothing is saved.'),
    connectForm,
    h('p', { id: 'ws-status', class: 'status' }, 'Disconnected'),
    subForm, pubForm,
    h('h3', {}, 'Messages'),
    h('ol', { id: 'ws-messages', class: 'messages' }))
}

function qosSelect (id: string): HTMLSelectElement {
  return h('select', { id }, h('option', { value: '0' }, '0'), h('option', { value: '1' }, '1'), h('option', { value: '2' }, '2'))
}

function log (text: string, message?: { topic: string, payload: string, qos: number, retain: boolean }): void {
  const list = $('ws-messages')
  const item = message
    ? h('li', { class: 'msg' }, h('code', { class: 'topic' }, message.topic), ' ', h('span', { class: 'payload' }, message.payload), ' ', h('small', {}, `QoS ${message.qos}${message.retain ? ', retained' : ''}`))
    : h('li', { class: 'event' }, text)
  list.prepend(item)
  while (list.children.length > 200) list.lastElementChild?.remove()
}

function wsState (connected: boolean, text: string): void {
  $('ws-status').textContent = text
  $('ws-status').className = `status ${connected ? 'on' : ''}`
  for (const id of ['ws-subscribe', 'ws-publish', 'ws-disconnect']) $<HTMLButtonElement>(id).disabled = !connected
  $<HTMLButtonElement>('ws-connect').disabled = connected
}

async function wsConnect (): Promise<void> {
  mqttClient?.end(true)
  wsState(false, 'Connecting…')
  let mqtt: { connect (url: string, opts: Record<string, unknown>): MqttClientLike }
  try {
    mqtt = (await import(MQTT_BUNDLE)).default
  } catch (err) {
    wsState(false, `Could not load MQTT.js: ${String(err)}`)
    return
  }
  const user = $('ws-user').value
  const password = $('ws-password').value
  const c = mqtt.connect($('ws-url').value, {
    clientId: $('ws-client-id').value,
    username: user === '' ? undefined : user,
    password: password === '' ? undefined : password,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    protocolVersion: 4
  })
  mqttClient = c
  c.on('connect', () => { wsState(true, `Connected as ${user || '(anonymous)'}`); log('connected') })
  c.on('message', (topic: string, payload: Uint8Array, packet: { qos: number, retain: boolean }) => {
    log('', { topic, payload: new TextDecoder().decode(payload), qos: packet.qos, retain: packet.retain })
  })
  c.on('error', (err: Error) => { log(`error: ${err.message}`) })
  c.on('close', () => { if (mqttClient === c) wsState(false, 'Disconnected') })
}

// ---------------------------------------------------------------------------------------------- start

api<{ csrfToken: string, user: string }>('GET', '/session').then(s => { csrf = s.csrfToken; showApp(s.user) }, () => { showLogin() })
window.addEventListener('resize', () => { if (current === 'overview') drawChart() })
