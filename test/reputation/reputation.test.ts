import { describe, expect, it } from 'vitest'
import { Reputation } from '../../src/reputation/reputation.js'
import { newSigner } from '../helpers/credits.js'

describe('Reputation', () => {
  it('distrusts after a wrong result', () => {
    const reputation = new Reputation({ self: 'me', bootstrapPeers: [], clock: () => 0 })
    for (let stage = 0; stage < 5; stage++) {
      reputation.recordOutcome('p', 'completed')
    }

    reputation.recordOutcome('p', 'wrong_result')

    expect(reputation.isDistrusted('p')).toBe(true)
  })

  it('backs off a failing provider', () => {
    let now = 0
    const reputation = new Reputation({ self: 'me', bootstrapPeers: [], clock: () => now, backoff: { baseMs: 1000 } })

    reputation.recordOutcome('p', 'failed')
    expect(reputation.isDistrusted('p')).toBe(true)
    now = 1000
    expect(reputation.isDistrusted('p')).toBe(false)
  })

  it('does not distrust unknown peers', () => {
    const reputation = new Reputation({ self: 'me', bootstrapPeers: ['b'] })

    expect(reputation.isDistrusted('stranger')).toBe(false)
    expect(reputation.trustScore('stranger')).toBe(0)
  })

  it('ranks by global trust', async () => {
    const me = await newSigner()
    const bootstrap = await newSigner()
    const [good, better] = [await newSigner(), await newSigner()]
    const reputation = new Reputation({ self: me.peerId, bootstrapPeers: [bootstrap.peerId] })
    reputation.acceptReport(createReport(bootstrap, [[good.peerId, 0.2], [better.peerId, 0.8]]))

    reputation.recompute()

    expect(reputation.rankProviders([good.peerId, better.peerId])).toEqual([better.peerId, good.peerId])
  })

  it('keeps the newest report', async () => {
    const bootstrap = await newSigner()
    const peer = await newSigner()
    const reputation = new Reputation({ self: 'me', bootstrapPeers: [bootstrap.peerId], clock: () => 10_000 })

    expect(reputation.acceptReport(createReport(bootstrap, [[peer.peerId, 1]], 2000))).toBe(true)
    expect(reputation.acceptReport(createReport(bootstrap, [[peer.peerId, 1]], 1000))).toBe(false)
  })

  it('rejects reports from the future', async () => {
    const bootstrap = await newSigner()
    const peer = await newSigner()
    const reputation = new Reputation({ self: 'me', bootstrapPeers: [], clock: () => 0 })

    expect(() => reputation.acceptReport(createReport(bootstrap, [[peer.peerId, 1]], 3_600_000))).toThrow(/ahead of this node's clock/)
  })

  it('drops the reports of forkers', async () => {
    const bootstrap = await newSigner()
    const forker = await newSigner()
    const friend = await newSigner()
    const reputation = new Reputation({ self: 'me', bootstrapPeers: [bootstrap.peerId] })
    reputation.acceptReport(createReport(bootstrap, [[forker.peerId, 1]]))
    reputation.acceptReport(createReport(forker, [[friend.peerId, 1]]))

    reputation.markForker(forker.peerId)
    reputation.recompute()

    expect(reputation.isDistrusted(forker.peerId)).toBe(true)
    expect(reputation.globalTrust(forker.peerId)).toBe(0)
    expect(reputation.globalTrust(friend.peerId)).toBe(0)
  })
})

function createReport (reporter: Awaited<ReturnType<typeof newSigner>>, trust: Array<[string, number]>, time = 1000): Uint8Array {
  const reputation = new Reputation({ self: reporter.peerId, bootstrapPeers: [], clock: () => time })
  for (const [peer, weight] of trust) {
    reputation.local.restore(peer, weight * 100, 1)
  }
  return reputation.createReport(reporter)
}
