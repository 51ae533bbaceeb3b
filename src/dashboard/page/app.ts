import { element, required, setText } from './dom.js'
import { formatTime } from './format.js'
import { renderSnapshot } from './render.js'
import type { DashboardCascadeEvent, DashboardSnapshot } from '../snapshot-types.js'

/** Cascade events kept in the list on the page. */
const MAX_ACTIVITY_ITEMS = 30
/** The newest cascade event shown; the stream sends recent ones again when it reconnects. */
let lastEventId = 0

/**
 * Connects to the node's dashboard stream and keeps the page current:
 * each `snapshot` event redraws the figures and tables, each `cascade`
 * event adds a line to the event list. The browser reconnects by itself
 * when the node restarts.
 */
function connect (): void {
  const connection = required('#connection')
  const stream = new EventSource('/api/v1/dashboard/events')

  stream.addEventListener('snapshot', (message) => {
    renderSnapshot(JSON.parse((message as MessageEvent<string>).data) as DashboardSnapshot)
    showConnection(connection, 'live', 'Live: updated every second')
  })
  stream.addEventListener('cascade', (message) => {
    addActivity(JSON.parse((message as MessageEvent<string>).data) as DashboardCascadeEvent)
  })
  stream.addEventListener('error', () => {
    showConnection(connection, 'reconnecting', 'Lost the connection to the node; reconnecting…')
  })
}

function showConnection (connection: HTMLElement, state: string, text: string): void {
  if (connection.getAttribute('data-state') !== state) {
    connection.setAttribute('data-state', state)
  }
  setText(connection, text)
}

function addActivity (entry: DashboardCascadeEvent): void {
  if (entry.id <= lastEventId) {
    return
  }
  lastEventId = entry.id
  required('#no-activity').hidden = true
  const list = required('#activity')
  const { event } = entry
  const details = [event.from, event.to].every(stage => typeof stage === 'string') ? ` ${String(event.from)} → ${String(event.to)}` : ''
  const provider = typeof event.provider === 'string' ? ` on ${event.provider.slice(0, 8)}…${event.provider.slice(-5)}` : ''
  list.prepend(element('li', {},
    element('time', { datetime: event.at }, formatTime(event.at)),
    ` ${event.type.replace(/_/g, ' ')}${details}${provider} `,
    element('span', { class: 'mono', title: event.cascadeId }, event.cascadeId.slice(0, 8))
  ))
  while (list.children.length > MAX_ACTIVITY_ITEMS) {
    list.lastElementChild?.remove()
  }
}

connect()
