import { describe, expect, it } from 'vitest'
import { PROTOCOL_VERSION } from '../../src/dht/capacity-record.js'
import { chooseProviders, incompatibility, rankCandidates } from '../../src/dht/ranking.js'
import { defaultSnapshot } from '../support/capacity.js'
import type { CapacityRecord } from '../../src/dht/capacity-record.js'
import type { Candidate, StageNeeds } from '../../src/dht/ranking.js'

function record (peerId: string, changes: Partial<CapacityRecord> = {}): CapacityRecord {
  return {
    ...defaultSnapshot(),
    version: PROTOCOL_VERSION,
    peerId,
    seq: 1,
    issuedAt: 1,
    expiresAt: 2,
    encryptionKey: new Uint8Array(32),
    receiptHead: null,
    addresses: [],
    ...changes
  }
}

function candidate (peerId: string, options: { trust?: number, freeCpus?: number, perCpuSecond?: number, rttMs?: number } = {}): Omit<Candidate, 'score'> {
  const base = defaultSnapshot()
  return {
    peerId,
    trust: options.trust ?? 0.5,
    rttMs: options.rttMs ?? 5,
    record: record(peerId, {
      cpus: { free: options.freeCpus ?? 2, total: 8 },
      price: { ...base.price, perCpuSecond: options.perCpuSecond ?? base.price.perCpuSecond }
    })
  }
}

const order = (ranked: Candidate[]): string[] => ranked.map(entry => entry.peerId)

describe('ranking order', () => {
  it('puts higher trust first', () => {
    expect(order(rankCandidates([candidate('low', { trust: 0.2 }), candidate('high', { trust: 0.9 })]))).toEqual(['high', 'low'])
  })

  it('puts more free capacity first', () => {
    expect(order(rankCandidates([candidate('small', { freeCpus: 1 }), candidate('large', { freeCpus: 4 })]))).toEqual(['large', 'small'])
  })

  it('puts the cheaper provider first', () => {
    expect(order(rankCandidates([candidate('dear', { perCpuSecond: 40 }), candidate('cheap', { perCpuSecond: 10 })]))).toEqual(['cheap', 'dear'])
  })

  it('puts the shorter round trip first', () => {
    expect(order(rankCandidates([candidate('far', { rttMs: 80 }), candidate('near', { rttMs: 2 })]))).toEqual(['near', 'far'])
  })

  it('lets a trust gap outweigh capacity and price', () => {
    // Trust weighs 0.5 against 0.4 for capacity and price together, so a
    // gap of 0.8 in trust beats 8 times the CPUs at a quarter of the price.
    const trusted = candidate('trusted', { trust: 0.9, freeCpus: 1, perCpuSecond: 40 })
    const unknown = candidate('unknown', { trust: 0.1, freeCpus: 8, perCpuSecond: 10 })

    expect(order(rankCandidates([unknown, trusted]))).toEqual(['trusted', 'unknown'])
  })

  it('lets capacity and price outweigh latency', () => {
    const roomy = candidate('roomy', { freeCpus: 8, perCpuSecond: 10, rttMs: 50 })
    const close = candidate('close', { freeCpus: 1, perCpuSecond: 40, rttMs: 1 })

    expect(order(rankCandidates([close, roomy]))).toEqual(['roomy', 'close'])
  })
})

describe('provider choice', () => {
  it('spreads picks over near-equal providers', () => {
    const ranked = rankCandidates([
      candidate('a', { trust: 0.8 }),
      candidate('b', { trust: 0.8, rttMs: 6 }),
      candidate('c', { trust: 0.79 }),
      candidate('poor', { trust: 0.1, freeCpus: 1 })
    ])
    const picks = new Map<string, number>()

    for (let round = 0; round < 3000; round++) {
      const [chosen] = chooseProviders(ranked, 1)
      picks.set(chosen?.peerId ?? '', (picks.get(chosen?.peerId ?? '') ?? 0) + 1)
    }

    for (const peer of ['a', 'b', 'c']) {
      expect(picks.get(peer) ?? 0).toBeGreaterThan(800)
    }
    expect(picks.get('poor') ?? 0).toBe(0)
  })

  it('widens the pool to the count asked for', () => {
    const ranked = rankCandidates([candidate('best', { trust: 1 }), candidate('mid', { trust: 0.5 }), candidate('worst', { trust: 0 })])

    expect(chooseProviders(ranked, 2).map(entry => entry.peerId).sort()).toEqual(['best', 'mid'])
  })

  it('returns fewer when fewer exist', () => {
    expect(chooseProviders(rankCandidates([candidate('only')]), 3)).toHaveLength(1)
  })
})

describe('provider compatibility', () => {
  const needs: StageNeeds = { cpus: 1, memoryBytes: 1024 ** 3 }

  it('accepts a provider with room', () => {
    expect(incompatibility(record('p'), needs)).toBeUndefined()
  })

  it('rejects a full provider', () => {
    expect(incompatibility(record('p', { cpus: { free: 0, total: 2 } }), needs)).toMatch(/free CPUs/)
  })

  it('rejects weaker isolation', () => {
    expect(incompatibility(record('p'), { ...needs, minIsolation: 'gvisor' })).toMatch(/needs at least gvisor/)
  })

  it('accepts stronger isolation', () => {
    expect(incompatibility(record('p', { runtime: { name: 'runsc', isolation: 'gvisor' } }), { ...needs, minIsolation: 'container' })).toBeUndefined()
  })

  it('rejects a missing agent', () => {
    expect(incompatibility(record('p', { agents: [] }), { ...needs, agent: 'claude' })).toMatch(/agent claude/)
  })

  it('rejects another protocol version', () => {
    expect(incompatibility(record('p', { version: PROTOCOL_VERSION + 1 }), needs)).toMatch(/protocol version/)
  })

  it('rejects a price over the maximum', () => {
    expect(incompatibility(record('p'), { ...needs, maxPrice: { perCpuSecond: 1, perGibSecond: 100, perThousandTokens: 100 } })).toMatch(/highest accepted price/)
  })
})
