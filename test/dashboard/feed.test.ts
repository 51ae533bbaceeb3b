import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { CascadeEvents } from '../../src/cascade/events.js'
import { DashboardFeed } from '../../src/dashboard/feed.js'
import { silentLogger } from '../../src/node/logger.js'
import type { CascadeEvent } from '../../src/cascade/events.js'
import type { DashboardSnapshot } from '../../src/dashboard/snapshot-types.js'

/** A builder that counts its builds and returns a bare snapshot numbered by them. */
class CountingBuilder {
  builds = 0
  noted: CascadeEvent[] = []

  async build (): Promise<DashboardSnapshot> {
    this.builds++
    return { generatedAt: String(this.builds) } as unknown as DashboardSnapshot
  }

  noteEvent (event: CascadeEvent): void {
    this.noted.push(event)
  }
}

function created (cascadeId: string): CascadeEvent {
  return { type: 'cascade_created', cascadeId, title: cascadeId, at: '2026-01-01T00:00:00.000Z' }
}

describe('dashboard feed', () => {
  beforeEach(() => { vi.useFakeTimers() })
  afterEach(() => { vi.useRealTimers() })

  it('sends a new client a snapshot', async () => {
    const builder = new CountingBuilder()
    const feed = new DashboardFeed({ builder, events: new CascadeEvents(), logger: silentLogger() })
    const snapshots: DashboardSnapshot[] = []

    feed.subscribe({ snapshot: (snapshot) => { snapshots.push(snapshot) }, cascadeEvent: () => {} })
    await vi.advanceTimersByTimeAsync(0)
    feed.stop()

    expect(snapshots.length).toBe(1)
  })

  it('builds every second while clients listen', async () => {
    const builder = new CountingBuilder()
    const feed = new DashboardFeed({ builder, events: new CascadeEvents(), logger: silentLogger(), intervalMs: 1000 })

    const unsubscribe = feed.subscribe({ snapshot: () => {}, cascadeEvent: () => {} })
    await vi.advanceTimersByTimeAsync(3000)
    const whileListening = builder.builds
    unsubscribe()
    await vi.advanceTimersByTimeAsync(10_000)

    expect(whileListening).toBe(4)
    expect(builder.builds).toBe(whileListening)
    expect(feed.clientCount).toBe(0)
  })

  it('replays recent cascade events', async () => {
    const builder = new CountingBuilder()
    const events = new CascadeEvents()
    for (let index = 0; index < 40; index++) {
      events.emit(created(`cascade-${index}`))
    }
    const feed = new DashboardFeed({ builder, events, logger: silentLogger() })
    const received: string[] = []

    feed.subscribe({ snapshot: () => {}, cascadeEvent: (entry) => { received.push(entry.event.cascadeId) } })
    events.emit(created('live'))
    feed.stop()

    expect(received.length).toBe(31)
    expect(received[0]).toBe('cascade-10')
    expect(received.at(-1)).toBe('live')
    expect(builder.noted.length).toBe(41)
  })

  it('searches the network while clients listen', async () => {
    const builder = new CountingBuilder()
    let searches = 0
    const feed = new DashboardFeed({
      builder,
      events: new CascadeEvents(),
      logger: silentLogger(),
      networkRefreshMs: 30_000,
      refreshNetwork: async () => { searches++ }
    })

    const unsubscribe = feed.subscribe({ snapshot: () => {}, cascadeEvent: () => {} })
    await vi.advanceTimersByTimeAsync(60_000)
    const whileListening = searches
    unsubscribe()
    await vi.advanceTimersByTimeAsync(120_000)

    expect(whileListening).toBe(3)
    expect(searches).toBe(whileListening)
  })
})
