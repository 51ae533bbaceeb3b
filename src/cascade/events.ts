import { EventEmitter } from 'node:events'
import type { Stage } from './stages.js'

/**
 * What happens to cascades, in order, for the event stream, webhooks and
 * `emdx cascade add --follow`. Every event names its cascade.
 */
export type CascadeEvent =
  | { type: 'cascade_created', cascadeId: string, title: string, at: string }
  | { type: 'stage_searching', cascadeId: string, from: Stage, to: Stage, attempt: number, at: string }
  | { type: 'stage_dispatched', cascadeId: string, from: Stage, to: Stage, attempt: number, provider: string, jobId: string, at: string }
  | { type: 'stage_running', cascadeId: string, from: Stage, to: Stage, provider: string, at: string }
  | { type: 'stage_progress', cascadeId: string, from: Stage, to: Stage, provider: string, lines: string[], at: string }
  | { type: 'stage_retrying', cascadeId: string, from: Stage, to: Stage, provider?: string, reason: string, delayMs: number, at: string }
  | { type: 'stage_completed', cascadeId: string, from: Stage, to: Stage, provider?: string, documentId: number, title: string, credits?: number, branch?: string, at: string }
  | { type: 'cascade_completed', cascadeId: string, documentId?: number, at: string }
  | { type: 'cascade_failed', cascadeId: string, from?: Stage, reason: string, at: string }
  | { type: 'cascade_cancelled', cascadeId: string, at: string }

export type CascadeEventType = CascadeEvent['type']

/** The most events kept for clients that connect late; older ones are dropped. */
const HISTORY_LIMIT = 1000

/**
 * Fans cascade events out to listeners (the HTTP event stream, webhooks,
 * metrics) and keeps the most recent ones so a client that connects late
 * can catch up from an event id.
 */
export class CascadeEvents {
  private readonly emitter = new EventEmitter()
  private readonly history: Array<{ id: number, event: CascadeEvent }> = []
  private nextId = 1

  constructor () {
    // Every open event stream adds a listener.
    this.emitter.setMaxListeners(0)
  }

  emit (event: CascadeEvent): void {
    const entry = { id: this.nextId++, event }
    this.history.push(entry)
    if (this.history.length > HISTORY_LIMIT) {
      this.history.shift()
    }
    this.emitter.emit('event', entry)
  }

  /** Listens for events with an increasing id; returns a function that stops listening. */
  subscribe (listener: (entry: { id: number, event: CascadeEvent }) => void): () => void {
    this.emitter.on('event', listener)
    return () => { this.emitter.off('event', listener) }
  }

  /** Events after the given id that are still kept, oldest first. */
  since (id: number): Array<{ id: number, event: CascadeEvent }> {
    return this.history.filter(entry => entry.id > id)
  }
}
