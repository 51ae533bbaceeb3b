import { describe, expect, it } from 'vitest'
import { Backoff } from '../../src/reputation/backoff.js'

function clockAt (start: number): { now: () => number, advance: (ms: number) => void } {
  let time = start
  return { now: () => time, advance: (ms) => { time += ms } }
}

describe('Backoff', () => {
  it('doubles the wait per failure', () => {
    const clock = clockAt(1000)
    const backoff = new Backoff({ baseMs: 100, maxMs: 10_000, clock: clock.now })

    const waits = [1, 2, 3, 4].map(() => backoff.recordFailure('p') - clock.now())

    expect(waits).toEqual([100, 200, 400, 800])
  })

  it('caps the wait at max', () => {
    const clock = clockAt(0)
    const backoff = new Backoff({ baseMs: 100, maxMs: 500, clock: clock.now })

    for (let failure = 0; failure < 80; failure++) {
      backoff.recordFailure('p')
    }

    expect(backoff.backedOffUntil('p')).toBe(500)
  })

  it('ends when the wait passes', () => {
    const clock = clockAt(0)
    const backoff = new Backoff({ baseMs: 100, clock: clock.now })
    backoff.recordFailure('p')

    clock.advance(99)
    expect(backoff.isBackedOff('p')).toBe(true)
    clock.advance(1)
    expect(backoff.isBackedOff('p')).toBe(false)
  })

  it('resets after a success', () => {
    const clock = clockAt(0)
    const backoff = new Backoff({ baseMs: 100, clock: clock.now })
    backoff.recordFailure('p')
    backoff.recordFailure('p')

    backoff.recordSuccess('p')

    expect(backoff.isBackedOff('p')).toBe(false)
    expect(backoff.recordFailure('p')).toBe(100)
  })
})
