import { RemoteStageError } from './requester.js'

/** The side of a job this node is on, as in ledger entries and receipts. */
export type JobRole = 'executor' | 'requester'

/**
 * State of a job. An executor's job goes `receiving` (payload on the
 * way), `running`, `settling` (result sent, receipt being signed); a
 * requester's goes `offered`, `running`, `settling`. Both end `completed`
 * or `failed`.
 */
export type JobState = 'offered' | 'receiving' | 'running' | 'settling' | 'completed' | 'failed'

/** One stage job, on either side of the stage protocol. Times are milliseconds since the epoch. */
export interface JobRecord {
  jobId: string
  role: JobRole
  /** The other side: the requester of a job run here, the provider of a job sent out. */
  peer: string
  /** The stage name of the offer, such as `idea-prompt` or `command`. */
  stage: string
  kind: 'agent' | 'command'
  state: JobState
  startedAt: number
  finishedAt?: number
  /**
   * The sandbox outcome (`succeeded`, `failed`, `timed_out`, ...) once a
   * result exists; `rejected`, `cancelled` or `error` for a job that ended
   * without one.
   */
  outcome?: string
  /** Reason a failed job failed. */
  error?: string
}

export type JobStart = Pick<JobRecord, 'jobId' | 'role' | 'peer' | 'stage' | 'kind' | 'state'>

export interface JobEnd {
  state: 'completed' | 'failed'
  /** Without one, a failed job keeps the outcome of its result, or gets `error` when it has none. */
  outcome?: string
  error?: string
}

export interface JobRegistryInit {
  /** Finished jobs kept for display, newest first; older ones are dropped. */
  maxFinished?: number
  now?: () => number
}

const DEFAULT_MAX_FINISHED = 100
const MAX_ERROR_CHARS = 300

/**
 * The stage jobs of this node that are running, and the most recent
 * finished ones, for the dashboard and the metrics. The executor and the
 * dispatcher report each job's start, changes and end. Running jobs are
 * bounded by the capacity leases and by the dispatches in flight, because
 * both report the end of every job they begin.
 */
export class JobRegistry {
  private readonly active = new Map<string, JobRecord>()
  private readonly finished: JobRecord[] = []
  private readonly listeners = new Set<(job: JobRecord) => void>()
  private readonly maxFinished: number
  private readonly now: () => number

  constructor (init: JobRegistryInit = {}) {
    this.maxFinished = init.maxFinished ?? DEFAULT_MAX_FINISHED
    this.now = init.now ?? Date.now
  }

  /** Records the start of a job. */
  begin (start: JobStart): void {
    this.active.set(key(start.role, start.jobId), { ...start, startedAt: this.now() })
  }

  /** Moves a running job to another state; does nothing for a job that is not running. */
  update (role: JobRole, jobId: string, state: JobState, outcome?: string): void {
    const job = this.active.get(key(role, jobId))
    if (job === undefined) {
      return
    }
    job.state = state
    if (outcome !== undefined) {
      job.outcome = outcome
    }
  }

  /** Records the end of a job and notifies the listeners. A job that is not running is ignored. */
  finish (role: JobRole, jobId: string | undefined, end: JobEnd): void {
    if (jobId === undefined) {
      return
    }
    const job = this.active.get(key(role, jobId))
    if (job === undefined) {
      return
    }
    this.active.delete(key(role, jobId))

    job.state = end.state
    job.outcome = end.outcome ?? job.outcome ?? 'error'
    job.finishedAt = Math.max(job.startedAt, this.now())
    if (end.error !== undefined) {
      job.error = end.error.slice(0, MAX_ERROR_CHARS)
    }
    this.finished.unshift(job)
    if (this.finished.length > this.maxFinished) {
      this.finished.pop()
    }
    for (const listener of this.listeners) {
      listener({ ...job })
    }
  }

  /** Running jobs, oldest first, then finished ones, newest first; copies. */
  list (role?: JobRole): JobRecord[] {
    const running = [...this.active.values()].sort((a, b) => a.startedAt - b.startedAt)
    return [...running, ...this.finished]
      .filter(job => role === undefined || job.role === role)
      .map(job => ({ ...job }))
  }

  /** Calls the listener with every job that finishes; returns a function that stops it. */
  onFinished (listener: (job: JobRecord) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }
}

function key (role: JobRole, jobId: string): string {
  return `${role}:${jobId}`
}

/** Returns the outcome to record for a job that ended with an error rather than a result. */
export function failureOutcome (err: unknown, signal?: AbortSignal): string {
  if (signal?.aborted === true) {
    return 'cancelled'
  }
  if (err instanceof RemoteStageError && err.failure === 'rejected') {
    return 'rejected'
  }
  return 'error'
}
