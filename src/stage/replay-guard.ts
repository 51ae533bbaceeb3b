import { textSublevel } from '../node/data-dir.js'
import type { RootDatabase, TextSublevel } from '../node/data-dir.js'

/**
 * Job ids and ephemeral keys an executor has accepted, kept for a week so
 * that a replayed offer or payload is rejected before anything runs, also
 * after a restart. Entries older than the retention are pruned at start.
 */
export class ReplayGuard {
  static readonly RETENTION_MS = 7 * 24 * 3600_000
  private readonly store: TextSublevel
  private readonly now: () => number
  private readonly pending = new Set<string>()

  private constructor (store: TextSublevel, now: () => number) {
    this.store = store
    this.now = now
  }

  static async open (database: RootDatabase, now: () => number = Date.now): Promise<ReplayGuard> {
    const guard = new ReplayGuard(textSublevel(database, 'stage-replay'), now)
    await guard.prune()
    return guard
  }

  /** True when the id was recorded before, or is being recorded now. */
  async seen (kind: 'job' | 'key', id: string): Promise<boolean> {
    const key = `${kind}:${id}`
    return this.pending.has(key) || (await this.store.get(key)) !== undefined
  }

  /**
   * Records an id; returns false if it was recorded before. Checking and
   * recording are one step, so two streams cannot both pass with one id.
   */
  async claim (kind: 'job' | 'key', id: string): Promise<boolean> {
    const key = `${kind}:${id}`
    if (this.pending.has(key)) {
      return false
    }
    this.pending.add(key)
    try {
      if ((await this.store.get(key)) !== undefined) {
        return false
      }
      await this.store.put(key, String(this.now()))
      return true
    } finally {
      this.pending.delete(key)
    }
  }

  private async prune (): Promise<void> {
    const cutoff = this.now() - ReplayGuard.RETENTION_MS
    const stale: string[] = []
    for await (const [key, value] of this.store.iterator()) {
      if (Number(value) < cutoff) {
        stale.push(key)
      }
    }
    if (stale.length > 0) {
      await this.store.batch(stale.map(key => ({ type: 'del' as const, key })))
    }
  }
}
