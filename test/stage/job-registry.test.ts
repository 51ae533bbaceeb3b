import { describe, expect, it } from 'vitest'
import { JobRegistry } from '../../src/stage/job-registry.js'
import type { JobRecord, JobStart } from '../../src/stage/job-registry.js'

function start (jobId: string, role: JobStart['role'] = 'executor'): JobStart {
  return { jobId, role, peer: 'peer-a', stage: 'idea-prompt', kind: 'agent', state: 'receiving' }
}

/** Creates a clock the test moves by hand, in milliseconds since the epoch. */
function manualClock (): { now: () => number, advance: (ms: number) => void } {
  let time = 1_700_000_000_000
  return { now: () => time, advance: (ms) => { time += ms } }
}

describe('JobRegistry', () => {
  it('lists running jobs before finished ones', () => {
    const clock = manualClock()
    const jobs = new JobRegistry({ now: clock.now })

    jobs.begin(start('first'))
    clock.advance(10)
    jobs.begin(start('second'))
    jobs.finish('executor', 'first', { state: 'completed', outcome: 'succeeded' })
    clock.advance(10)
    jobs.begin(start('third'))

    expect(jobs.list().map(job => job.jobId)).toEqual(['second', 'third', 'first'])
  })

  it('filters jobs by role', () => {
    const jobs = new JobRegistry()

    jobs.begin(start('run-here', 'executor'))
    jobs.begin(start('sent-out', 'requester'))

    expect(jobs.list('executor').map(job => job.jobId)).toEqual(['run-here'])
    expect(jobs.list('requester').map(job => job.jobId)).toEqual(['sent-out'])
  })

  it('keeps a bounded number of finished jobs', () => {
    const jobs = new JobRegistry({ maxFinished: 3 })

    for (let index = 0; index < 5; index++) {
      jobs.begin(start(`job-${index}`))
      jobs.finish('executor', `job-${index}`, { state: 'completed', outcome: 'succeeded' })
    }

    expect(jobs.list().map(job => job.jobId)).toEqual(['job-4', 'job-3', 'job-2'])
  })

  it('keeps the outcome of a failed result', () => {
    const jobs = new JobRegistry()

    jobs.begin(start('job'))
    jobs.update('executor', 'job', 'settling', 'timed_out')
    jobs.finish('executor', 'job', { state: 'failed', error: 'the requester never countersigned' })

    const [job] = jobs.list()
    expect(job?.state).toBe('failed')
    expect(job?.outcome).toBe('timed_out')
    expect(job?.error).toBe('the requester never countersigned')
  })

  it('marks a failure without result as error', () => {
    const jobs = new JobRegistry()

    jobs.begin(start('job'))
    jobs.finish('executor', 'job', { state: 'failed', error: 'the payload did not arrive' })

    expect(jobs.list()[0]?.outcome).toBe('error')
  })

  it('tells listeners of each finished job', () => {
    const clock = manualClock()
    const jobs = new JobRegistry({ now: clock.now })
    const finished: JobRecord[] = []
    const stop = jobs.onFinished(job => { finished.push(job) })

    jobs.begin(start('job'))
    clock.advance(1500)
    jobs.finish('executor', 'job', { state: 'completed', outcome: 'succeeded' })
    stop()
    jobs.begin(start('later'))
    jobs.finish('executor', 'later', { state: 'completed', outcome: 'succeeded' })

    expect(finished.length).toBe(1)
    expect(finished[0]?.jobId).toBe('job')
    expect((finished[0]?.finishedAt ?? 0) - (finished[0]?.startedAt ?? 0)).toBe(1500)
  })

  it('ignores the end of an unknown job', () => {
    const jobs = new JobRegistry()
    const finished: JobRecord[] = []
    jobs.onFinished(job => { finished.push(job) })

    jobs.begin(start('job', 'requester'))
    jobs.finish('executor', 'job', { state: 'completed', outcome: 'succeeded' })
    jobs.finish('requester', undefined, { state: 'failed' })

    expect(finished).toEqual([])
    expect(jobs.list()[0]?.state).toBe('receiving')
  })
})
