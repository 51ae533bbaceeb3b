import { MAX_LOG_LINE_CHARS } from './progress.js'

/**
 * Keeps the first `capBytes` of a stage's stdout and counts the rest. The
 * first chunk that goes past the cap calls `onExceeded` once, so the run is
 * killed while the stage is still printing, not after it exits.
 */
export class CappedOutput {
  private readonly capBytes: number
  private readonly chunks: Buffer[] = []
  private keptBytes = 0
  private total = 0
  private readonly onExceeded: () => void

  constructor (capBytes: number, onExceeded: () => void) {
    this.capBytes = capBytes
    this.onExceeded = onExceeded
  }

  write (chunk: Buffer): void {
    const wasExceeded = this.exceeded
    this.total += chunk.length
    const room = this.capBytes - this.keptBytes
    if (room > 0) {
      const part = chunk.length <= room ? chunk : chunk.subarray(0, room)
      this.chunks.push(part)
      this.keptBytes += part.length
    }
    if (!wasExceeded && this.exceeded) {
      this.onExceeded()
    }
  }

  get exceeded (): boolean {
    return this.total > this.capBytes
  }

  get totalBytes (): number {
    return this.total
  }

  text (): string {
    return Buffer.concat(this.chunks).toString('utf8')
  }
}

/**
 * Splits a byte stream into lines for progress events. A line longer than
 * the log line limit is emitted in pieces, so a stage that prints no newline
 * cannot grow the buffer.
 */
export class LineSplitter {
  private pending = ''
  private readonly onLine: (line: string) => void

  constructor (onLine: (line: string) => void) {
    this.onLine = onLine
  }

  write (chunk: Buffer): void {
    this.pending += chunk.toString('utf8')
    let newline = this.pending.indexOf('\n')
    while (newline >= 0) {
      this.onLine(this.pending.slice(0, newline))
      this.pending = this.pending.slice(newline + 1)
      newline = this.pending.indexOf('\n')
    }
    while (this.pending.length > MAX_LOG_LINE_CHARS) {
      this.onLine(this.pending.slice(0, MAX_LOG_LINE_CHARS))
      this.pending = this.pending.slice(MAX_LOG_LINE_CHARS)
    }
  }

  end (): void {
    if (this.pending !== '') {
      this.onLine(this.pending)
      this.pending = ''
    }
  }
}
