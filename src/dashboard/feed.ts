import type { DashboardSnapshot } from './snapshot-types.js'
import type { SnapshotBuilder } from './snapshot.js'
import type { CascadeEvent, CascadeEvents } from '../cascade/events.js'
import type { Logger } from '../node/logger.js'

/** A client of the dashboard stream. */
export interface FeedListener {
  snapshot: (snapshot: DashboardSnapshot) => void
  cascadeEvent: (entry: { id: number, event: CascadeEvent }) => void
}

export interface DashboardFeedInit {
  builder: SnapshotBuilder
  events: CascadeEvents
  logger: Logger
  /** Time between snapshots, in milliseconds. */
  intervalMs?: number
}

export const DEFAULT_SNAPSHOT_INTERVAL_MS = 1_000
/** After a cascade event, the next snapshot comes this soon, so a stage change shows at once. */
const EVENT_SNAPSHOT_DELAY_MS = 100
/** Failed builds are logged the first time and then once in this many. */
const LOG_EVERY_FAILURES = 60

/**
 * Sends every dashboard client the same snapshot of the node every second
 * and each cascade event as it happens. It builds snapshots only while a
 * client listens, one at a time, and once for all clients.
 */
export class DashboardFeed {
  private readonly init: DashboardFeedInit
  private readonly listeners = new Set<FeedListener>()
  private timer?: NodeJS.Timeout
  private eventTimer?: NodeJS.Timeout
  private unsubscribeEvents?: () => void
  private building?: Promise<void>
  private buildAgain = false
  private failures = 0

  constructor (init: DashboardFeedInit) {
    this.init = init
  }

  /** Adds a client; it gets a snapshot at once. Returns a function that removes it. */
  subscribe (listener: FeedListener): () => void {
    this.listeners.add(listener)
    if (this.listeners.size === 1) {
      this.startFeeding()
    }
    void this.refresh()
    return () => {
      this.listeners.delete(listener)
      if (this.listeners.size === 0) {
        this.stopFeeding()
      }
    }
  }

  /** Clients listening now. */
  get clientCount (): number {
    return this.listeners.size
  }

  /** Removes every client and stops building snapshots. */
  stop (): void {
    this.listeners.clear()
    this.stopFeeding()
  }

  private startFeeding (): void {
    this.timer = setInterval(() => { void this.refresh() }, this.init.intervalMs ?? DEFAULT_SNAPSHOT_INTERVAL_MS)
    this.unsubscribeEvents = this.init.events.subscribe((entry) => {
      this.init.builder.noteEvent(entry.event)
      for (const listener of this.listeners) {
        listener.cascadeEvent(entry)
      }
      this.eventTimer ??= setTimeout(() => {
        this.eventTimer = undefined
        void this.refresh()
      }, EVENT_SNAPSHOT_DELAY_MS)
    })
  }

  private stopFeeding (): void {
    clearInterval(this.timer)
    clearTimeout(this.eventTimer)
    this.timer = undefined
    this.eventTimer = undefined
    this.unsubscribeEvents?.()
    this.unsubscribeEvents = undefined
  }

  /** Builds a snapshot and sends it to every client; a request during a build builds once more after it. */
  private async refresh (): Promise<void> {
    if (this.building !== undefined) {
      this.buildAgain = true
      return await this.building
    }
    this.building = this.buildAndSend().finally(() => { this.building = undefined })
    return await this.building
  }

  private async buildAndSend (): Promise<void> {
    do {
      this.buildAgain = false
      try {
        const snapshot = await this.init.builder.build()
        this.failures = 0
        for (const listener of this.listeners) {
          listener.snapshot(snapshot)
        }
      } catch (err) {
        this.failures++
        if (this.failures % LOG_EVERY_FAILURES === 1) {
          this.init.logger.warn({ err, failures: this.failures }, 'failed to build a dashboard snapshot')
        }
      }
    } while (this.buildAgain && this.listeners.size > 0)
  }
}
