import { z } from 'zod'
import { decodeCanonical, encodeCanonical } from '../records/canonical.js'
import type { Reputation } from './reputation.js'
import type { Logger } from '../node/logger.js'

/** The operations of an abstract-level sublevel that the store uses. */
interface ReputationSublevel {
  put: (key: string, value: Uint8Array) => Promise<void>
  iterator: (options: { gte: string, lt: string }) => AsyncIterable<[string, Uint8Array]>
}

/** A LevelDB-like database that the store takes a sublevel of: the node's root database. */
export interface ReputationDatabase {
  sublevel: (name: string, options: { keyEncoding: 'utf8', valueEncoding: 'view' }) => object
}

const OUTCOME_PREFIX = 'o:'
const storedOutcomesSchema = z.strictObject({
  score: z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
  outcomes: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
})

/**
 * Keeps a node's local trust (each peer's score and outcome count) in the
 * `reputation` sublevel, so that a restart does not forget which providers
 * served it well. Backoff and the reports of other peers are not kept: the
 * first is short-lived and the second is fetched again within one exchange
 * round.
 */
export class ReputationStore {
  private readonly store: ReputationSublevel
  private readonly logger: Logger
  /** The newest save; each save waits for the one before, because LevelDB may reorder concurrent puts of one key. */
  private lastSave: Promise<void> = Promise.resolve()

  constructor (database: ReputationDatabase, logger: Logger) {
    this.store = database.sublevel('reputation', { keyEncoding: 'utf8', valueEncoding: 'view' }) as ReputationSublevel
    this.logger = logger
  }

  /**
   * Restores the stored local trust into the reputation. A value that cannot
   * be decoded is skipped with a warning: it costs one peer's history, and
   * stopping the node over it would cost more.
   */
  async restore (reputation: Reputation): Promise<number> {
    let restored = 0
    for await (const [key, value] of this.store.iterator({ gte: OUTCOME_PREFIX, lt: OUTCOME_PREFIX + '\xff' })) {
      const peer = key.slice(OUTCOME_PREFIX.length)
      try {
        const stored = storedOutcomesSchema.parse(decodeCanonical(value, 64))
        reputation.local.restore(peer, stored.score, stored.outcomes)
        restored++
      } catch (err) {
        this.logger.warn({ peer, err }, 'skipped a stored local trust value that cannot be decoded')
      }
    }
    return restored
  }

  /** Saves one peer's local trust in the background. A failed write is logged rather than thrown, so that saving cannot fail a stage. */
  save (peer: string, score: number, outcomes: number): void {
    const value = encodeCanonical({ score, outcomes })
    this.lastSave = this.lastSave
      .then(async () => { await this.store.put(OUTCOME_PREFIX + peer, value) })
      .catch((err: unknown) => { this.logger.warn({ peer, err }, 'failed to save local trust') })
  }

  /** Waits for the saves in progress; call it before closing the database. */
  async flush (): Promise<void> {
    await this.lastSave
  }
}
