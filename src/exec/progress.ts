import type { StageProgress, StageState } from './types.js'

/** Maximum events waiting for a reader; further log lines are dropped and counted. */
export const MAX_QUEUED_EVENTS = 256

/** Maximum characters of one log line; longer lines are cut. */
export const MAX_LOG_LINE_CHARS = 1000

/**
 * A bounded queue of progress events with one reader. State events are always
 * kept, log lines are dropped when the reader falls behind, and the number
 * dropped is reported in a `dropped` event, so a stage that prints without end
 * cannot make the node hold its output in memory.
 */
export class ProgressChannel implements AsyncIterable<StageProgress> {
  private readonly jobId: string
  private readonly queue: StageProgress[] = []
  private dropped = 0
  private closed = false
  private wake?: () => void

  constructor (jobId: string) {
    this.jobId = jobId
  }

  state (state: StageState): void {
    this.push({ type: 'state', jobId: this.jobId, state, at: new Date().toISOString() })
  }

  log (stream: 'stdout' | 'stderr', line: string): void {
    if (this.queue.length >= MAX_QUEUED_EVENTS) {
      this.dropped++
      return
    }
    const cut = line.length > MAX_LOG_LINE_CHARS ? `${line.slice(0, MAX_LOG_LINE_CHARS)}…` : line
    this.push({ type: 'log', jobId: this.jobId, stream, line: cut, at: new Date().toISOString() })
  }

  /** Ends the stream after the events already queued. */
  close (): void {
    this.closed = true
    this.wake?.()
  }

  private push (event: StageProgress): void {
    if (this.closed) {
      return
    }
    if (this.dropped > 0) {
      this.queue.push({ type: 'dropped', jobId: this.jobId, lines: this.dropped, at: event.at })
      this.dropped = 0
    }
    this.queue.push(event)
    this.wake?.()
  }

  async * [Symbol.asyncIterator] (): AsyncIterator<StageProgress> {
    while (true) {
      const event = this.queue.shift()
      if (event !== undefined) {
        yield event
        continue
      }
      if (this.closed) {
        return
      }
      await new Promise<void>(resolve => { this.wake = resolve })
      this.wake = undefined
    }
  }
}
