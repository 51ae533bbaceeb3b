import { PROTOCOL_VERSION } from './capacity-record.js'
import type { CapacityRecord, Isolation } from './capacity-record.js'
import type { Price } from '../credits/receipt.js'

/** What a stage needs of a provider. */
export interface StageNeeds {
  cpus: number
  memoryBytes: number
  /** The weakest isolation the requester accepts; stronger is always fine. */
  minIsolation?: Isolation
  agent?: string
  image?: string
  arch?: string
  /** The highest price the requester accepts, per component. */
  maxPrice?: Price
}

/** A provider that can run the stage, with what the ranking needs to know about it. */
export interface Candidate {
  peerId: string
  record: CapacityRecord
  /** Time the direct capacity query took, dial included; a proxy for round-trip time. */
  rttMs: number
  /** Global trust of the peer, 0 to 1. */
  trust: number
  score: number
}

const isolationStrength: Record<Isolation, number> = { namespaces: 0, container: 1, gvisor: 2 }

/**
 * Returns why a provider cannot run the stage, or undefined when it can.
 * Expiry is checked where records are fetched.
 */
export function incompatibility (record: CapacityRecord, needs: StageNeeds): string | undefined {
  if (record.version !== PROTOCOL_VERSION) {
    return `speaks protocol version ${record.version}, not ${PROTOCOL_VERSION}`
  }
  if (record.cpus.free < needs.cpus) {
    return `has ${record.cpus.free} free CPUs, needs ${needs.cpus}`
  }
  if (record.memory.freeBytes < needs.memoryBytes) {
    return `has ${record.memory.freeBytes} bytes of free memory, needs ${needs.memoryBytes}`
  }
  if (needs.minIsolation !== undefined && isolationStrength[record.runtime.isolation] < isolationStrength[needs.minIsolation]) {
    return `isolates with ${record.runtime.isolation}, needs at least ${needs.minIsolation}`
  }
  if (needs.agent !== undefined && !record.agents.includes(needs.agent)) {
    return `does not offer the agent ${needs.agent}`
  }
  if (needs.image !== undefined && !record.images.includes(needs.image)) {
    return `does not run the image ${needs.image}`
  }
  if (needs.arch !== undefined && record.arch !== needs.arch) {
    return `runs on ${record.arch}, not ${needs.arch}`
  }
  const max = needs.maxPrice
  if (max !== undefined && (record.price.perCpuSecond > max.perCpuSecond || record.price.perGibSecond > max.perGibSecond || record.price.perThousandTokens > max.perThousandTokens)) {
    return 'asks more than the highest accepted price'
  }
  return undefined
}

/**
 * Weights of the ranking score. Trust counts most, because a cheap or fast
 * provider that fails or cheats costs a retry; free capacity and price come
 * next; round-trip time only breaks near-ties. The score orders providers
 * within a group: `chooseProvider` puts those past probation with the
 * requester before the others.
 */
export const RANKING_WEIGHTS = { trust: 0.5, capacity: 0.2, price: 0.2, latency: 0.1 }

/**
 * The cost, in millicredits, of a reference stage used to compare prices:
 * 60 CPU seconds, 1 GiB for 60 s and 10,000 agent tokens.
 */
export function referenceCost (price: Price): number {
  return 60 * price.perCpuSecond + 60 * price.perGibSecond + 10 * price.perThousandTokens
}

/**
 * Scores candidates from 0 to 1, each factor relative to the best candidate
 * of the same set: trust as given; free CPUs over the most free CPUs; the
 * cheapest reference cost over this one's; the shortest round trip over this
 * one's. Returns them best first.
 */
export function rankCandidates (candidates: Array<Omit<Candidate, 'score'>>): Candidate[] {
  const mostFreeCpus = Math.max(...candidates.map(candidate => candidate.record.cpus.free))
  const lowestCost = Math.min(...candidates.map(candidate => referenceCost(candidate.record.price)))
  const shortestRtt = Math.min(...candidates.map(candidate => candidate.rttMs))

  const ratio = (numerator: number, denominator: number): number => denominator <= 0 ? 1 : Math.min(1, numerator / denominator)

  return candidates
    .map(candidate => {
      const capacity = ratio(candidate.record.cpus.free, mostFreeCpus)
      const price = ratio(lowestCost, referenceCost(candidate.record.price))
      const latency = ratio(Math.max(shortestRtt, 1), Math.max(candidate.rttMs, 1))
      const score = RANKING_WEIGHTS.trust * clamp(candidate.trust) +
        RANKING_WEIGHTS.capacity * capacity +
        RANKING_WEIGHTS.price * price +
        RANKING_WEIGHTS.latency * latency
      return { ...candidate, score }
    })
    .sort((a, b) => b.score - a.score)
}

/**
 * Candidates within this much of the best score are interchangeable: the
 * choice among them is random, so that load spreads over equally good
 * providers instead of all requesters picking the same one.
 */
export const CHOICE_MARGIN = 0.1

/**
 * Picks `count` providers at random from the pool of the best: those within
 * CHOICE_MARGIN of the top score, widened to at least `count` candidates.
 */
export function chooseProviders (ranked: Candidate[], count: number, random: () => number = Math.random): Candidate[] {
  const best = ranked[0]?.score ?? 0
  const near = ranked.filter(candidate => candidate.score >= best - CHOICE_MARGIN)
  const pool = near.length >= count ? near : ranked.slice(0, count)

  const remaining = [...pool]
  const chosen: Candidate[] = []
  while (chosen.length < count && remaining.length > 0) {
    const index = Math.floor(random() * remaining.length)
    chosen.push(...remaining.splice(index, 1))
  }
  return chosen
}

/**
 * Picks one provider for a stage. Providers that `isVerified` (past
 * probation with this requester's spot checks) come before all others,
 * whatever their score, because global trust alone can be inflated by a
 * collective that vouches for itself. Within the group the choice is
 * `chooseProviders` over the ranking: at random among the best few.
 */
export function chooseProvider (ranked: Candidate[], isVerified: (peerId: string) => boolean, random: () => number = Math.random): Candidate | undefined {
  const verified = ranked.filter(candidate => isVerified(candidate.peerId))
  const group = verified.length > 0 ? verified : ranked
  return chooseProviders(group, 1, random)[0]
}

function clamp (value: number): number {
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0
}
