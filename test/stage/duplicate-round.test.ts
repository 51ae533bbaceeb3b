import { describe, expect, it } from 'vitest'
import { DuplicateRound } from '../../src/stage/spot-checks.js'
import { succeeded } from '../support/stage.js'
import type { StageResultPayload } from '../../src/stage/messages.js'
import type { ResultCheckpoint } from '../../src/stage/requester.js'

// The rendezvous of the two runs of a duplicated stage: which result is
// countersigned at once and which is held for the comparison.

function result (stdout: string, cpuSeconds = 0.5): StageResultPayload {
  const { agent: _agent, bundle: _bundle, ...rest } = succeeded(stdout, { metrics: { cpuSeconds, wallTimeMs: 100, peakMemoryBytes: 1024 } })
  return rest
}

function checkpoint (provider: string): ResultCheckpoint {
  return { jobId: provider.padEnd(32, '0'), executor: provider } as unknown as ResultCheckpoint
}

describe('DuplicateRound', () => {
  it('accepts matching results at once', async () => {
    const round = new DuplicateRound(['a', 'b'], 5_000)

    const verdicts = await Promise.all([round.judge('a', result('same', 0.5), checkpoint('a')), round.judge('b', result('same', 2), checkpoint('b'))])

    expect(verdicts).toEqual([undefined, undefined])
    expect(round.runs.get('a')?.state).toBe('accepted')
    expect(round.runs.get('b')?.state).toBe('accepted')
  })

  it('holds both differing results', async () => {
    const round = new DuplicateRound(['a', 'b'], 5_000)

    const verdicts = await Promise.all([round.judge('a', result('right'), checkpoint('a')), round.judge('b', result('garbage'), checkpoint('b'))])

    expect(verdicts[0]).toMatch(/different result/)
    expect(verdicts[1]).toMatch(/different result/)
    expect(round.runs.get('a')?.checkpoint?.executor).toBe('a')
  })

  it('holds a result whose sibling is late', async () => {
    const round = new DuplicateRound(['a', 'b'], 50)

    const early = await round.judge('a', result('same'), checkpoint('a'))
    const late = await round.judge('b', result('same'), checkpoint('b'))

    expect(early).toMatch(/held until the result of the second run arrives/)
    expect(round.runs.get('a')?.state).toBe('held')
    expect(late).toBeUndefined()
  })

  it('accepts unchecked when sibling fails', async () => {
    const round = new DuplicateRound(['a', 'b'], 5_000)

    const judged = round.judge('a', result('only'), checkpoint('a'))
    round.fail('b')

    expect(await judged).toBeUndefined()
    expect(round.runs.get('b')?.state).toBe('failed')
  })
})
