import { describe, expect, it } from 'vitest'
import { Reputation } from '../../src/reputation/reputation.js'
import { chooseProviders } from '../../src/reputation/selection.js'
import { SpotCheckPolicy } from '../../src/reputation/spot-check.js'

function passChecks (reputation: Reputation, policy: SpotCheckPolicy, provider: string, count: number): void {
  for (let check = 0; check < count; check++) {
    policy.recordCheck(provider, true)
    reputation.recordOutcome(provider, 'completed')
  }
}

describe('chooseProviders', () => {
  it('prefers providers past probation', () => {
    const reputation = new Reputation({ self: 'me', bootstrapPeers: [] })
    const policy = new SpotCheckPolicy({ probationChecks: 2 })
    passChecks(reputation, policy, 'checked', 2)

    const choice = chooseProviders(['stranger', 'checked'], reputation, policy)

    expect(choice.verified).toEqual(['checked'])
    expect(choice.onProbation).toEqual(['stranger'])
  })

  it('drops cheater after wrong canary', () => {
    const reputation = new Reputation({ self: 'me', bootstrapPeers: [] })
    const policy = new SpotCheckPolicy({ probationChecks: 2 })
    passChecks(reputation, policy, 'cheater', 5)

    policy.recordCheck('cheater', false)
    reputation.recordOutcome('cheater', 'wrong_result')
    const choice = chooseProviders(['cheater', 'honest'], reputation, policy)

    expect(choice.verified).toEqual([])
    expect(choice.onProbation).toEqual(['honest'])
  })

  it('orders verified providers by local score', () => {
    const reputation = new Reputation({ self: 'me', bootstrapPeers: [] })
    const policy = new SpotCheckPolicy({ probationChecks: 1 })
    passChecks(reputation, policy, 'steady', 4)
    passChecks(reputation, policy, 'new', 1)

    expect(chooseProviders(['new', 'steady'], reputation, policy).verified).toEqual(['steady', 'new'])
  })
})
