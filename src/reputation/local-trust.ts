/** The outcome of a stage sent to a provider, as the requester saw it. */
export type StageOutcome = 'completed' | 'failed' | 'timed_out' | 'wrong_result'

/**
 * What each outcome adds to a provider's local trust. A failure costs as
 * much as a success earns, so a provider that fails half its stages gains
 * nothing. A timeout costs more because the requester waited the whole
 * deadline. A wrong result (a spot check that did not match) costs as much
 * as twenty successes, because it is a lie rather than bad luck. With one
 * stage in ten checked, a provider that lies on every stage loses more than
 * it gains.
 */
export const OUTCOME_WEIGHTS: Readonly<Record<StageOutcome, number>> = {
  completed: 1,
  failed: -1,
  timed_out: -2,
  wrong_result: -20
}

interface PeerRecord {
  /** Sum of outcome weights. */
  score: number
  outcomes: number
}

/**
 * A node's own experience with providers: the sum of outcome weights per
 * peer, from which its row of the EigenTrust matrix (and the trust report
 * it sends) is made.
 */
export class LocalTrust {
  private readonly peers = new Map<string, PeerRecord>()

  record (peer: string, outcome: StageOutcome): void {
    const record = this.peers.get(peer) ?? { score: 0, outcomes: 0 }
    record.score += OUTCOME_WEIGHTS[outcome]
    record.outcomes++
    this.peers.set(peer, record)
  }

  /** The sum of outcome weights for the peer; 0 when this node has no experience with it. */
  score (peer: string): number {
    return this.peers.get(peer)?.score ?? 0
  }

  /** The number of outcomes recorded for the peer. */
  outcomes (peer: string): number {
    return this.peers.get(peer)?.outcomes ?? 0
  }

  hasExperience (peer: string): boolean {
    return this.peers.has(peer)
  }

  /**
   * Returns the normalised local trust vector: each peer with a positive
   * score gets score / sum of positive scores, the EigenTrust c_ij. Peers
   * with a score of 0 or less are left out.
   */
  normalized (): Map<string, number> {
    let total = 0
    for (const record of this.peers.values()) {
      total += Math.max(0, record.score)
    }
    const vector = new Map<string, number>()
    if (total === 0) {
      return vector
    }
    for (const [peer, record] of this.peers) {
      if (record.score > 0) {
        vector.set(peer, record.score / total)
      }
    }
    return vector
  }

  /** Every peer with its score and number of outcomes, for the API and for saving. */
  entries (): Array<{ peer: string, score: number, outcomes: number }> {
    return [...this.peers].map(([peer, record]) => ({ peer, score: record.score, outcomes: record.outcomes }))
  }

  /** Restores a peer's record saved by `entries`. */
  restore (peer: string, score: number, outcomes: number): void {
    this.peers.set(peer, { score, outcomes })
  }
}
