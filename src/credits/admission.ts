import { chainBalance } from './chain.js'
import type { ChainSegment, ChainState } from './chain.js'
import type { ForkProof } from './fork-proof.js'

/**
 * The credit rules every node applies, in millicredits (1 credit = 1000).
 * They are protocol constants rather than settings: a node that used a
 * bigger grant would see other nodes' balances differently from its peers.
 * docs/credits.md gives the reasons for each figure.
 */
export const STARTING_GRANT = 100_000
/** The credit line of an identity with no global trust. */
export const STARTING_CREDIT_LINE = 10_000
/** The credit line of a peer with full global trust (score 1). */
export const MAX_CREDIT_LINE = 2_000_000
/**
 * The minimum trust score a requester must have for the credits that others
 * earned from it to count at admission. Below it, a payer could be one of a
 * ring of fresh identities signing receipts to each other to mint credits.
 */
export const BACKED_PAYER_SCORE = 0.2

/** Returns how much a requester may owe beyond its balance, given its trust score (0..1). */
export function creditLine (trustScore: number): number {
  const score = Number.isFinite(trustScore) ? Math.min(1, Math.max(0, trustScore)) : 0
  return Math.floor(STARTING_CREDIT_LINE + (MAX_CREDIT_LINE - STARTING_CREDIT_LINE) * score)
}

/**
 * Computes the balance that admission counts: the starting grant, minus everything
 * spent, plus what was earned from payers whose trust score reaches
 * BACKED_PAYER_SCORE (or that the verifier itself backs, such as itself).
 * Credits earned from unknown or untrusted payers are real in the chain but
 * do not buy work, because nothing stops two fresh identities from signing
 * each other receipts of any size.
 */
export function backedBalance (state: ChainState, isBackedPayer: (peerId: string) => boolean, startingGrant = STARTING_GRANT): number {
  let unbacked = 0
  for (const [payer, amount] of state.earnedByPayer) {
    if (!isBackedPayer(payer)) {
      unbacked += amount
    }
  }
  return chainBalance(state, startingGrant) - unbacked
}

export interface AdmissionRequest {
  /** The requester's chain, as verified from the segment it sent. */
  chain: ChainState
  /** The price of the job, in millicredits. */
  price: number
  /** The requester's trust score (0..1) in this node's view. */
  trustScore: number
  /** True when this node distrusts the requester (a proven forker, for example). */
  distrusted: boolean
  isBackedPayer: (peerId: string) => boolean
  startingGrant?: number
}

export type AdmissionDecision =
  | { admitted: true, available: number }
  | { admitted: false, reason: 'distrusted' | 'insufficient-credit', available: number }

/**
 * Decides whether an executor takes a job: only when the requester is not
 * distrusted and its backed balance plus its credit line covers the price.
 */
export function decideAdmission (request: AdmissionRequest): AdmissionDecision {
  const available = backedBalance(request.chain, request.isBackedPayer, request.startingGrant) + creditLine(request.trustScore)
  if (request.distrusted) {
    return { admitted: false, reason: 'distrusted', available }
  }
  if (available < request.price) {
    return { admitted: false, reason: 'insufficient-credit', available }
  }
  return { admitted: true, available }
}

/** The parts of the executor's reputation that admission reads; a Reputation has them all. */
export interface RequesterTrust {
  trustScore: (peer: string) => number
  isDistrusted: (peer: string) => boolean
}

/** The ledger operations admission uses; a Ledger has them. */
export interface AdmissionLedger {
  readonly owner: string
  importSegment: (segment: ChainSegment, options?: { more?: boolean }) => Promise<{ state: ChainState, forkProofs: ForkProof[] }>
  isForker: (peer: string) => boolean
}

export type RequesterAdmission = AdmissionDecision & {
  /** Fork proofs found while importing the requester's segment: share them with peers. */
  forkProofs: ForkProof[]
}

/**
 * Runs the executor's credit check for one offer: imports the requester's
 * chain segment (which the executor requested from `verifiedChain(peer).seq`
 * on), then decides with `decideAdmission`. A segment that does not verify
 * throws a LedgerEntryError, which the stage protocol turns into a Reject. A
 * fork found in the segment rejects the job as distrusted.
 */
export async function admitRequester (ledger: AdmissionLedger, trust: RequesterTrust, segment: ChainSegment, price: number): Promise<RequesterAdmission> {
  const { state, forkProofs } = await ledger.importSegment(segment)
  const requester = segment.owner
  const decision = decideAdmission({
    chain: state,
    price,
    trustScore: trust.trustScore(requester),
    distrusted: forkProofs.length > 0 || ledger.isForker(requester) || trust.isDistrusted(requester),
    isBackedPayer: payer => payer === ledger.owner || trust.trustScore(payer) >= BACKED_PAYER_SCORE
  })
  return { ...decision, forkProofs }
}
