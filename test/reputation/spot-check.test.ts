import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { sha256 } from '../../src/records/hash.js'
import { SpotCheckPolicy, canaryPassed, createCanary, judgeDuplicates } from '../../src/reputation/spot-check.js'

function seeded (seed: number): () => number {
  let state = seed
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31
    return state / 2 ** 31
  }
}

describe('SpotCheckPolicy', () => {
  it('checks every stage on probation', () => {
    const policy = new SpotCheckPolicy({ share: 0, probationChecks: 3 })

    const checks = [1, 2, 3].map(() => policy.choose('p', false))

    expect(checks).toEqual(['canary', 'canary', 'canary'])
  })

  it('duplicates deterministic stages', () => {
    const policy = new SpotCheckPolicy({ share: 0, probationChecks: 1 })

    expect(policy.choose('p', true)).toBe('duplicate')
  })

  it('checks the configured share', () => {
    const policy = new SpotCheckPolicy({ share: 0.2, probationChecks: 1, random: seeded(1) })
    policy.recordCheck('p', true)

    let checked = 0
    for (let stage = 0; stage < 10_000; stage++) {
      checked += policy.choose('p', false) === 'none' ? 0 : 1
    }

    expect(checked / 10_000).toBeGreaterThan(0.18)
    expect(checked / 10_000).toBeLessThan(0.22)
  })

  it('restarts probation after a failure', () => {
    const policy = new SpotCheckPolicy({ share: 0, probationChecks: 2 })
    policy.recordCheck('p', true)
    policy.recordCheck('p', true)

    policy.recordCheck('p', false)

    expect(policy.isOnProbation('p')).toBe(true)
  })

  it('rejects a share above one', () => {
    expect(() => new SpotCheckPolicy({ share: 1.5 })).toThrow(RangeError)
  })
})

describe('canary', () => {
  it('passes when really run', async () => {
    const canary = createCanary(5000)
    const [file, ...args] = canary.command

    const { stdout } = await promisify(execFile)(file!, args, { encoding: 'buffer' })

    expect(canaryPassed(canary, new Uint8Array(stdout))).toBe(true)
  })

  it('fails for a garbage output', () => {
    const canary = createCanary(10)

    expect(canaryPassed(canary, new TextEncoder().encode('e3b0c44298fc1c149afbf4c8996fb924  -\n'))).toBe(false)
  })

  it('differs for each nonce', () => {
    expect(createCanary(10).expectedOutputHash).not.toEqual(createCanary(10).expectedOutputHash)
  })
})

describe('judgeDuplicates', () => {
  const right = sha256(new TextEncoder().encode('right'))
  const garbage = sha256(new TextEncoder().encode('garbage'))

  it('accepts two agreeing results', () => {
    const verdict = judgeDuplicates([{ provider: 'a', resultHash: right }, { provider: 'b', resultHash: right }])

    expect(verdict).toEqual({ agreed: right, wrong: [] })
  })

  it('has no majority for two', () => {
    const verdict = judgeDuplicates([{ provider: 'a', resultHash: right }, { provider: 'b', resultHash: garbage }])

    expect(verdict.agreed).toBeUndefined()
  })

  it('names the odd one out', () => {
    const verdict = judgeDuplicates([
      { provider: 'a', resultHash: right },
      { provider: 'b', resultHash: garbage },
      { provider: 'c', resultHash: right }
    ])

    expect(verdict.wrong).toEqual(['b'])
  })
})
