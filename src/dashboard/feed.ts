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
  builder: Pick<SnapshotBuilder, 'build' | 'noteEvent'>
  events: CascadeEvents
  logger: Logger
  /** Time between snapshots, in milliseconds. */
  intervalMs?: number
  /**
   * Searches the network for providers, so that the network part of the
   * snapshots lists what the network offers now and not only the providers
   * of this node's last stage.
   */
  refreshNetwork?: (signal: AbortSignal) => Promise<void>
  /** Time between network searches while a client listens, in milliseconds. */
  networkRefreshMs?: number
}

export const DEFAULT_SNAPSHOT_INTERVAL_MS = 1_000
export const DEFAULT_NETWORK_REFRESH_MS = 30_000
/** Time allowed for one network search, in milliseconds. */
const NETWORK_REFRESH_TIMEOUT_MS = 10_000
/** Cascade events a new client gets first, so its list does not start empty. */
const RECENT_EVENTS = 30
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
  private networkTimer?: NodeJS.Timeout
  private search?: AbortController
  private unsubscribeEvents?: () => void
  private building?: Promise<void>
  private buildAgain = false
  private failures = 0

  constructor (init: DashboardFeedInit) {
    this.init = init
  }

  /** Adds a client; it gets the recent cascade events and a snapshot at once. Returns a function that removes it. */
  subscribe (listener: FeedListener): () => void {
    this.listeners.add(listener)
    if (this.listeners.size === 1) {
      this.startFeeding()
    }
    for (const entry of this.init.events.since(0).slice(-RECENT_EVENTS)) {
      listener.cascadeEvent(entry)
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
    // Events kept from before the first client tell what running cascades do now.
    for (const entry of this.init.events.since(0)) {
      this.init.builder.noteEvent(entry.event)
    }
    this.timer = setInterval(() => { void this.refresh() }, this.init.intervalMs ?? DEFAULT_SNAPSHOT_INTERVAL_MS)
    if (this.init.refreshNetwork !== undefined) {
      void this.searchNetwork()
      this.networkTimer = setInterval(() => { void this.searchNetwork() }, this.init.networkRefreshMs ?? DEFAULT_NETWORK_REFRESH_MS)
    }
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
    clearInterval(this.networkTimer)
    this.search?.abort(new Error('no dashboard client is left'))
    this.timer = undefined
    this.eventTimer = undefined
    this.networkTimer = undefined
    this.unsubscribeEvents?.()
    this.unsubscribeEvents = undefined
  }

  /** Searches the network for providers, one search at a time, and sends a snapshot with what it found. */
  private async searchNetwork (): Promise<void> {
    if (this.search !== undefined || this.init.refreshNetwork === undefined) {
      return
    }
    const search = new AbortController()
    this.search = search
    try {
      await this.init.refreshNetwork(AbortSignal.any([search.signal, AbortSignal.timeout(NETWORK_REFRESH_TIMEOUT_MS)]))
    } catch (err) {
      this.init.logger.debug({ err }, 'failed to search the network for the dashboard')
    } finally {
      this.search = undefined
    }
    if (this.listeners.size > 0) {
      await this.refresh()
    }
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
