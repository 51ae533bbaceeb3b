/** The wait after a provider's first failure, in ms. */
export const BACKOFF_BASE_MS = 30_000
/** The maximum wait in ms, however often the provider failed. */
export const BACKOFF_MAX_MS = 60 * 60_000

export interface BackoffOptions {
  baseMs?: number
  maxMs?: number
  /** Milliseconds since the epoch; tests pass their own. */
  clock?: () => number
}

interface BackoffState {
  failures: number
  until: number
}

/**
 * Exponential backoff of failing providers: after the n-th consecutive
 * failure a provider gets no stage for base x 2^(n-1) ms, at most max ms.
 * A success clears it.
 */
export class Backoff {
  private readonly baseMs: number
  private readonly maxMs: number
  private readonly clock: () => number
  private readonly peers = new Map<string, BackoffState>()

  constructor (options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? BACKOFF_BASE_MS
    this.maxMs = options.maxMs ?? BACKOFF_MAX_MS
    this.clock = options.clock ?? Date.now
  }

  /** Records a failure and returns when the provider may get stages again, in ms since the epoch. */
  recordFailure (peer: string): number {
    const state = this.peers.get(peer) ?? { failures: 0, until: 0 }
    state.failures++
    const delay = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(state.failures - 1, 52))
    state.until = this.clock() + delay
    this.peers.set(peer, state)
    return state.until
  }

  recordSuccess (peer: string): void {
    this.peers.delete(peer)
  }

  isBackedOff (peer: string): boolean {
    const state = this.peers.get(peer)
    return state !== undefined && this.clock() < state.until
  }

  /** Consecutive failures since the last success. */
  failures (peer: string): number {
    return this.peers.get(peer)?.failures ?? 0
  }

  /** When the provider may get stages again (ms since the epoch), or undefined when it is not backed off. */
  backedOffUntil (peer: string): number | undefined {
    const state = this.peers.get(peer)
    return state !== undefined && this.clock() < state.until ? state.until : undefined
  }
}
