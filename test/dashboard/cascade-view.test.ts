import { describe, expect, it } from 'vitest'
import { cascadeView } from '../../src/dashboard/snapshot.js'
import type { CascadeRecord, Transform } from '../../src/cascade/store.js'

function record (changes: Partial<CascadeRecord>): CascadeRecord {
  return {
    id: 'c0ffee',
    title: 'Dark mode',
    content: 'Add a dark mode',
    startStage: 'idea',
    stopStage: 'done',
    remote: true,
    timeoutMs: 60_000,
    cpus: 1,
    memoryBytes: 512 * 1024 ** 2,
    maxCredits: 50_000,
    status: 'running',
    transforms: [],
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...changes
  }
}

function transform (from: Transform['from'], to: Transform['to'], state: Transform['state'], provider?: string): Transform {
  return { from, to, state, attempts: [], ...(provider === undefined ? {} : { provider }) }
}

describe('cascade view', () => {
  it('places transforms on the five stages', () => {
    const view = cascadeView(record({
      stopStage: 'planned',
      transforms: [
        transform('idea', 'prompt', 'completed', 'peer-a'),
        transform('prompt', 'analyzed', 'dispatched', 'peer-b'),
        transform('analyzed', 'planned', 'pending')
      ]
    }))

    expect(view.stages).toEqual([
      { stage: 'idea', state: 'done' },
      { stage: 'prompt', state: 'done', provider: 'peer-a' },
      { stage: 'analyzed', state: 'running', provider: 'peer-b' },
      { stage: 'planned', state: 'pending' },
      { stage: 'done', state: 'skipped' }
    ])
    expect(view.progress).toEqual({ done: 2, total: 4 })
  })

  it('skips stages before the start', () => {
    const view = cascadeView(record({ startStage: 'analyzed', transforms: [transform('analyzed', 'planned', 'pending'), transform('planned', 'done', 'pending')] }))

    expect(view.stages.map(stage => stage.state)).toEqual(['skipped', 'skipped', 'done', 'pending', 'pending'])
    expect(view.progress).toEqual({ done: 1, total: 3 })
  })

  it('shows a checkpointed result as running', () => {
    const view = cascadeView(record({ transforms: [transform('idea', 'prompt', 'result-received', 'peer-a')] }))

    expect(view.stages[1]).toEqual({ stage: 'prompt', state: 'running', provider: 'peer-a' })
  })

  it('shows the failed stage and the error', () => {
    const view = cascadeView(record({
      status: 'failed',
      error: 'no provider could run the stage',
      transforms: [transform('idea', 'prompt', 'completed', 'peer-a'), transform('prompt', 'analyzed', 'failed')]
    }), 'prompt → analyzed: searching for a provider (attempt 4)')

    expect(view.stages[2]?.state).toBe('failed')
    expect(view.error).toBe('no provider could run the stage')
    expect(view.activity).toBeUndefined()
  })

  it('shows the activity of a running cascade', () => {
    const view = cascadeView(record({ transforms: [transform('idea', 'prompt', 'dispatched')] }), 'idea → prompt: searching for a provider (attempt 1)')

    expect(view.activity).toBe('idea → prompt: searching for a provider (attempt 1)')
  })
})
