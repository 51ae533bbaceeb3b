import { describe, expect, it } from 'vitest'
import { computeEigenTrust } from '../../src/reputation/eigentrust.js'

function rows (entries: Record<string, Record<string, number>>): Map<string, Map<string, number>> {
  return new Map(Object.entries(entries).map(([reporter, row]) => [reporter, new Map(Object.entries(row))]))
}

function sum (trust: Map<string, number>): number {
  return [...trust.values()].reduce((total, value) => total + value, 0)
}

describe('computeEigenTrust', () => {
  it('converges to a distribution', () => {
    const result = computeEigenTrust({
      rows: rows({ a: { b: 0.5, c: 0.5 }, b: { c: 1 }, c: { a: 0.7, b: 0.3 } }),
      preTrusted: ['a'],
      personal: new Map()
    })

    expect(result.converged).toBe(true)
    expect(sum(result.trust)).toBeCloseTo(1, 9)
  })

  it('is a fixed point', () => {
    const input = { rows: rows({ a: { b: 1 }, b: { a: 0.4, c: 0.6 }, c: { a: 1 } }), preTrusted: ['a'], personal: new Map<string, number>() }
    const { trust } = computeEigenTrust(input)
    const t = (peer: string): number => trust.get(peer) ?? 0

    // b receives all of a's trust: t_b = 0.85 * t_a.
    expect(t('b')).toBeCloseTo(0.85 * t('a'), 6)
    // c receives 60% of b's: t_c = 0.85 * 0.6 * t_b.
    expect(t('c')).toBeCloseTo(0.85 * 0.6 * t('b'), 6)
  })

  it('gives isolated rings nothing', () => {
    const result = computeEigenTrust({
      rows: rows({ a: { b: 1 }, b: { a: 1 }, x: { y: 1 }, y: { x: 1 } }),
      preTrusted: ['a'],
      personal: new Map()
    })

    expect(result.trust.get('x') ?? 0).toBe(0)
    expect(result.trust.get('y') ?? 0).toBe(0)
  })

  it('follows personal experience', () => {
    const graph = rows({ a: { b: 0.5, c: 0.5 }, b: { a: 1 }, c: { a: 1 } })

    const trustsB = computeEigenTrust({ rows: graph, preTrusted: ['a'], personal: new Map([['b', 1]]) }).trust
    const trustsC = computeEigenTrust({ rows: graph, preTrusted: ['a'], personal: new Map([['c', 1]]) }).trust

    expect(trustsB.get('b')!).toBeGreaterThan(trustsB.get('c')!)
    expect(trustsC.get('c')!).toBeGreaterThan(trustsC.get('b')!)
  })

  it('drops excluded peers entirely', () => {
    const result = computeEigenTrust({
      rows: rows({ a: { b: 0.5, f: 0.5 }, f: { b: 1 }, b: { a: 1 } }),
      preTrusted: ['a'],
      personal: new Map(),
      excluded: new Set(['f'])
    })

    expect(result.trust.has('f')).toBe(false)
    expect(sum(result.trust)).toBeCloseTo(1, 9)
  })

  it('returns nothing without pre-trust', () => {
    const result = computeEigenTrust({ rows: rows({ a: { b: 1 } }), preTrusted: [], personal: new Map() })

    expect(result.trust.size).toBe(0)
  })

  it('ignores a reporter trusting itself', () => {
    const result = computeEigenTrust({ rows: rows({ a: { a: 1, b: 0 }, b: { a: 1 } }), preTrusted: ['a'], personal: new Map() })

    expect(result.trust.get('a')).toBeCloseTo(1, 9)
  })

  it('scales to ten thousand peers', () => {
    let seed = 7
    const random = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
      return seed / 2 ** 31
    }
    const graph = new Map<string, Map<string, number>>()
    for (let peer = 0; peer < 10_000; peer++) {
      const row = new Map<string, number>()
      for (let edge = 0; edge < 20; edge++) {
        row.set(`p${Math.floor(random() * 10_000)}`, 0.05)
      }
      graph.set(`p${peer}`, row)
    }

    const result = computeEigenTrust({ rows: graph, preTrusted: ['p0', 'p1', 'p2'], personal: new Map() })

    expect(result.converged).toBe(true)
    expect(sum(result.trust)).toBeCloseTo(1, 6)
  })
})
