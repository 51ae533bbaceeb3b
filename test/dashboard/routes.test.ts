import { beforeAll, describe, expect, it } from 'vitest'
import { ensurePageBuilt } from '../support/browser.js'
import { openEventStream } from '../support/event-stream.js'
import { startTestNode, waitFor } from '../support/nodes.js'
import { sampleValue, scrape } from '../support/prometheus.js'
import type { DashboardCascadeEvent, DashboardSnapshot } from '../../src/dashboard/snapshot-types.js'

// The dashboard's HTTP routes on a real node: the page files, the snapshot
// and its event stream. The page in a browser is tested in page.test.ts.

describe('dashboard routes', () => {
  beforeAll(async () => {
    await ensurePageBuilt()
  })

  it('serves the page with a strict policy', async () => {
    const node = await startTestNode()

    const response = await fetch(`${node.api.url}/`)
    const body = await response.text()

    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(response.headers.get('content-security-policy')).toContain("script-src 'self'")
    expect(response.headers.get('content-security-policy')).toContain("connect-src 'self'")
    expect(body).toContain('<script type="module" src="/dashboard/app.js"></script>')
  })

  it('serves the page scripts', async () => {
    const node = await startTestNode()

    const response = await fetch(`${node.api.url}/dashboard/app.js`)

    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    expect(await response.text()).toContain('/api/v1/dashboard/events')
  })

  it('rejects paths outside the page', async () => {
    const node = await startTestNode()

    const escaped = await fetch(`${node.api.url}/dashboard/..%2F..%2F..%2Fpackage.json`)
    const missing = await fetch(`${node.api.url}/dashboard/missing.js`)

    expect(escaped.status).toBe(404)
    expect(missing.status).toBe(404)
  })

  it('returns a snapshot as JSON', async () => {
    const node = await startTestNode({ share: false })

    const snapshot = await (await fetch(`${node.api.url}/api/v1/dashboard`)).json() as DashboardSnapshot

    expect(snapshot.node.peerId).toBe(node.peerId.toString())
    expect(snapshot.node.share.enabled).toBe(false)
    expect(snapshot.node.sandbox.gvisor).toBe(false)
    expect(snapshot.credits.balance).toBe(node.ledger.balance().balance)
    expect(snapshot.cascades).toEqual([])
  })

  it('streams a snapshot on connect', async () => {
    const node = await startTestNode()
    const stream = await openEventStream(`${node.api.url}/api/v1/dashboard/events`)

    const event = await stream.next(candidate => candidate.type === 'snapshot', 10_000)
    stream.close()

    expect((JSON.parse(event.data) as DashboardSnapshot).node.peerId).toBe(node.peerId.toString())
  })

  it('streams cascade events', async () => {
    const node = await startTestNode()
    const stream = await openEventStream(`${node.api.url}/api/v1/dashboard/events`)
    await stream.next(candidate => candidate.type === 'snapshot', 10_000)

    node.requesting.events.emit({ type: 'cascade_created', cascadeId: 'feedface', title: 'Dark mode', at: new Date().toISOString() })
    const event = await stream.next(candidate => candidate.type === 'cascade', 10_000)
    stream.close()

    expect((JSON.parse(event.data) as DashboardCascadeEvent).event.cascadeId).toBe('feedface')
  })

  it('forgets a client that went away', async () => {
    const node = await startTestNode()
    const stream = await openEventStream(`${node.api.url}/api/v1/dashboard/events`)
    await stream.next(candidate => candidate.type === 'snapshot', 10_000)
    const connected = sampleValue(await scrape(node.api.url), 'emdx_dashboard_clients')

    stream.close()
    await waitFor(async () => sampleValue(await scrape(node.api.url), 'emdx_dashboard_clients') === 0, 10_000, 'the node to drop the closed stream')

    expect(connected).toBe(1)
  })
})
