import type { SpotCheckPolicy } from './spot-check.js'

/** The parts of a node's reputation that provider choice reads; a Reputation has them all. */
export interface TrustView {
  isDistrusted: (peer: string) => boolean
  localScore: (peer: string) => number
  globalTrust: (peer: string) => number
  trustScore: (peer: string) => number
}

export interface ProviderChoice {
  /**
   * Providers past probation with this requester (they passed its own spot
   * checks), by local score and then global trust: the ones to send real
   * stages to.
   */
  verified: string[]
  /**
   * The other providers that are not distrusted, by global trust. A real
   * stage goes to one of them only when no verified provider is available,
   * and then with a spot check, because the probation policy checks every
   * stage of a provider on probation.
   */
  onProbation: string[]
}

/**
 * Sorts candidate providers for one stage. Global trust orders them but does
 * not replace the requester's own checks. In the many-node simulation, a
 * collective of cheaters that vouch for each other gathered more global
 * trust per node than honest providers, from the few canaries they passed by
 * luck. So real stages go first to providers that passed this requester's
 * own canaries, which no collective can inflate.
 */
export function chooseProviders (candidates: readonly string[], view: TrustView, spotChecks: SpotCheckPolicy): ProviderChoice {
  const verified: string[] = []
  const onProbation: string[] = []
  for (const peer of new Set(candidates)) {
    if (view.isDistrusted(peer)) {
      continue
    }
    if (spotChecks.isOnProbation(peer)) {
      onProbation.push(peer)
    } else {
      verified.push(peer)
    }
  }

  verified.sort((a, b) => view.localScore(b) - view.localScore(a) || view.globalTrust(b) - view.globalTrust(a))
  onProbation.sort((a, b) => view.globalTrust(b) - view.globalTrust(a))
  return { verified, onProbation }
}
