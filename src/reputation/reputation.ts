/**
 * A node's view of other peers' reputation, combining its own experience
 * (local trust and backoff), the trust reports it received, and fork proofs.
 *
 * API:
 * - `recordOutcome(peer, outcome)`: a stage's outcome; updates local trust
 *   and backoff.
 * - `createReport(signer)` / `acceptReport(bytes)`: signed trust reports out
 *   and in.
 * - `markForker(peer)`: a verified fork proof names the peer.
 * - `recompute()`: runs EigenTrust over the reports; call it after a batch
 *   of reports or outcomes, not per stage.
 * - `globalTrust(peer)`, `trustScore(peer)` (0..1), `isDistrusted(peer)`,
 *   `rankProviders(peers)`: the inputs of discovery and admission.
 */
import { Backoff } from './backoff.js'
import { computeEigenTrust } from './eigentrust.js'
import { LocalTrust } from './local-trust.js'
import { TrustReportError, createTrustReport, decodeTrustReport } from './trust-report.js'
import type { BackoffOptions } from './backoff.js'
import type { StageOutcome } from './local-trust.js'
import type { TrustReport } from './trust-report.js'
import type { Signer } from '../records/signature.js'

/**
 * A peer whose local score (sum of outcome weights) falls to this or lower
 * is distrusted by this node: one wrong result, or ten more failures than
 * successes.
 */
export const DISTRUST_LOCAL_SCORE = -10
/** A report dated further ahead of this node's clock is rejected. */
export const MAX_REPORT_CLOCK_SKEW_MS = 5 * 60_000
/** At most this many peers' reports are kept; a report from a new peer beyond it is dropped. */
export const MAX_STORED_REPORTS = 50_000

export interface ReputationInit {
  self: string
  /** The node's bootstrap peers: the pre-trusted set of EigenTrust. */
  bootstrapPeers: readonly string[]
  clock?: () => number
  backoff?: Omit<BackoffOptions, 'clock'>
  /** Called after each outcome with the peer's new local trust, to save it (see ReputationStore). */
  onLocalTrust?: (peer: string, score: number, outcomes: number) => void
}

export interface PeerReputation {
  peer: string
  /** The peer's share of global trust; all peers add up to 1. */
  globalTrust: number
  /** Global trust scaled so that a peer of average trust scores 1; from 0 to 1. */
  score: number
  /** This node's own sum of outcome weights for the peer. */
  localScore: number
  distrusted: boolean
  forker: boolean
  backedOffUntil?: number
}

export class Reputation {
  readonly self: string
  readonly local = new LocalTrust()
  readonly backoff: Backoff
  private readonly bootstrapPeers: readonly string[]
  private readonly clock: () => number
  private readonly onLocalTrust?: ReputationInit['onLocalTrust']
  private readonly reports = new Map<string, TrustReport>()
  private readonly forkers = new Set<string>()
  private trust = new Map<string, number>()
  private peersWithTrust = 0
  private computedAt?: number

  constructor (init: ReputationInit) {
    this.self = init.self
    this.bootstrapPeers = init.bootstrapPeers.filter(peer => peer !== init.self)
    this.clock = init.clock ?? Date.now
    this.backoff = new Backoff({ ...init.backoff, clock: this.clock })
    this.onLocalTrust = init.onLocalTrust
  }

  /** Records how a stage sent to the provider ended. */
  recordOutcome (peer: string, outcome: StageOutcome): void {
    this.local.record(peer, outcome)
    this.onLocalTrust?.(peer, this.local.score(peer), this.local.outcomes(peer))
    if (outcome === 'completed') {
      this.backoff.recordSuccess(peer)
    } else {
      this.backoff.recordFailure(peer)
    }
  }

  /** Signs this node's report of its local trust, to send to peers. */
  createReport (signer: Signer): Uint8Array {
    return createTrustReport(signer, this.local.normalized(), this.clock())
  }

  /**
   * Verifies and keeps a peer's report, replacing an older one of the same
   * reporter. Returns false when it is ignored (older than the one kept, from
   * this node or a forker, or no room). Throws a TrustReportError when it is
   * invalid or dated in the future.
   */
  acceptReport (bytes: Uint8Array): boolean {
    const report = decodeTrustReport(bytes)
    return this.acceptVerifiedReport(report)
  }

  /** Like `acceptReport`, for a report already decoded and verified. */
  acceptVerifiedReport (report: TrustReport): boolean {
    if (report.time > this.clock() + MAX_REPORT_CLOCK_SKEW_MS) {
      throw new TrustReportError(`trust report of ${report.reporter} is dated ${new Date(report.time).toISOString()}, ahead of this node's clock; check the reporter's clock`)
    }
    if (report.reporter === this.self || this.forkers.has(report.reporter)) {
      return false
    }
    const kept = this.reports.get(report.reporter)
    if (kept !== undefined && kept.time >= report.time) {
      return false
    }
    if (kept === undefined && this.reports.size >= MAX_STORED_REPORTS) {
      return false
    }
    this.reports.set(report.reporter, report)
    return true
  }

  /** Distrusts a peer that a verified fork proof names, and drops its report. */
  markForker (peer: string): void {
    this.forkers.add(peer)
    this.reports.delete(peer)
  }

  isForker (peer: string): boolean {
    return this.forkers.has(peer)
  }

  /** Recomputes global trust from the reports kept and this node's own experience. */
  recompute (): { iterations: number, converged: boolean, peers: number } {
    const rows = new Map<string, ReadonlyMap<string, number>>()
    for (const [reporter, report] of this.reports) {
      rows.set(reporter, report.trust)
    }
    const personal = this.local.normalized()
    rows.set(this.self, personal)

    const result = computeEigenTrust({ rows, preTrusted: this.bootstrapPeers, personal, excluded: this.forkers })
    result.trust.delete(this.self)
    this.trust = result.trust
    this.peersWithTrust = result.trust.size
    this.computedAt = this.clock()
    return { iterations: result.iterations, converged: result.converged, peers: result.trust.size }
  }

  /** This node's own sum of outcome weights for the peer. */
  localScore (peer: string): number {
    return this.local.score(peer)
  }

  /** The peer's share of global trust from the last `recompute`; 0 when unknown. */
  globalTrust (peer: string): number {
    return this.trust.get(peer) ?? 0
  }

  /**
   * Global trust scaled to 0..1: a peer with the average trust of the peers
   * that have some scores 1, and higher trust is capped there.
   */
  trustScore (peer: string): number {
    if (this.peersWithTrust === 0) {
      return 0
    }
    return Math.min(1, this.globalTrust(peer) * this.peersWithTrust)
  }

  /**
   * True for a proven forker, a provider in backoff, or a peer whose local
   * score is DISTRUST_LOCAL_SCORE or lower. A peer that is merely unknown is
   * not distrusted; it ranks low instead.
   */
  isDistrusted (peer: string): boolean {
    return this.forkers.has(peer) || this.backoff.isBackedOff(peer) || this.local.score(peer) <= DISTRUST_LOCAL_SCORE
  }

  /** Drops distrusted peers and orders the rest by trust score, highest first. */
  rankProviders (peers: readonly string[]): string[] {
    return peers
      .filter(peer => !this.isDistrusted(peer))
      .sort((a, b) => this.globalTrust(b) - this.globalTrust(a) || this.local.score(b) - this.local.score(a))
  }

  describe (peer: string): PeerReputation {
    const backedOffUntil = this.backoff.backedOffUntil(peer)
    return {
      peer,
      globalTrust: this.globalTrust(peer),
      score: this.trustScore(peer),
      localScore: this.local.score(peer),
      distrusted: this.isDistrusted(peer),
      forker: this.forkers.has(peer),
      ...(backedOffUntil === undefined ? {} : { backedOffUntil })
    }
  }

  /** Returns the peers with the most global trust, up to `limit`, for the API. */
  snapshot (limit = 100): { computedAt?: number, reports: number, peers: PeerReputation[] } {
    const known = new Set<string>([...this.trust.keys(), ...this.local.entries().map(entry => entry.peer), ...this.forkers])
    const described = [...known].map(peer => this.describe(peer))
    described.sort((a, b) => b.globalTrust - a.globalTrust)
    return {
      ...(this.computedAt === undefined ? {} : { computedAt: this.computedAt }),
      reports: this.reports.size,
      peers: described.slice(0, limit)
    }
  }
}
