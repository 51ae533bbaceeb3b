import { setTimeout as sleep } from 'node:timers/promises'
import { chooseProviders } from '../dht/ranking.js'
import { EmdxError } from '../node/errors.js'
import { failureOutcome } from './job-registry.js'
import { newJobId, RemoteStageError, runRemoteStage } from './requester.js'
import type { Discovery } from '../dht/discovery.js'
import type { StageNeeds } from '../dht/ranking.js'
import type { Logger } from '../node/logger.js'
import type { JobRegistry } from './job-registry.js'
import type { Accept, ProgressMessage } from './messages.js'
import type { RemoteStageContext, RemoteStageOptions, RemoteStageOutcome, RemoteStageTask } from './requester.js'

/** How a provider did on one attempt, as input to its reputation. */
export type ProviderOutcome = 'completed' | 'failed' | 'timed_out' | 'wrong_result' | 'rejected'

/** Receives the outcome of every attempt; reputation turns it into trust and back-off. */
export interface OutcomeReporter {
  report: (peerId: string, outcome: ProviderOutcome, detail: string) => void
}

/** No provider could run the stage within the attempts allowed. */
export class DispatchError extends EmdxError {
  readonly attempts: AttemptRecord[]

  constructor (message: string, attempts: AttemptRecord[]) {
    super('ERR_DISPATCH', message)
    this.attempts = attempts
  }
}

export interface AttemptRecord {
  provider?: string
  error: string
  at: number
}

/** Events of a dispatch, for progress display, checkpoints and the event stream. */
export type DispatchEvent =
  | { type: 'searching', attempt: number }
  | { type: 'dispatched', attempt: number, provider: string, jobId: string }
  | { type: 'accepted', provider: string, jobId: string, accept: Accept }
  | { type: 'progress', provider: string, jobId: string, progress: ProgressMessage }
  | { type: 'retrying', attempt: number, provider?: string, reason: string, delayMs: number }

export interface DispatchOptions {
  signal?: AbortSignal
  onEvent?: (event: DispatchEvent) => void
  /** Called with the job id before the offer is sent, so a checkpoint can name it. */
  beforeOffer?: (jobId: string, provider: string) => Promise<void>
  judgeResult?: RemoteStageOptions['judgeResult']
  onResult?: RemoteStageOptions['onResult']
}

export interface DispatcherInit {
  context: RemoteStageContext
  discovery: Discovery
  logger: Logger
  outcomes?: OutcomeReporter
  /** Attempts on different providers before giving up. */
  maxAttempts?: number
  /** Wait before the second attempt; it doubles with each attempt, up to 30 s. */
  backoffMs?: number
  /** Time allowed to find providers for one attempt. */
  discoveryTimeoutMs?: number
  /** Receives the start, changes and end of every attempt, for the dashboard and metrics. */
  jobs?: JobRegistry
}

const DEFAULT_MAX_ATTEMPTS = 4
const DEFAULT_BACKOFF_MS = 500
const MAX_BACKOFF_MS = 30_000

/**
 * Sends a stage to the network: finds providers, picks one of the best, runs
 * the stage there, and on a failure or silence moves it to another provider
 * after an exponential back-off, up to a number of attempts. Each attempt's
 * outcome goes to reputation. A stage is paid once: only the attempt that
 * returns a result produces a countersigned receipt.
 */
export class StageDispatcher {
  private readonly init: DispatcherInit

  constructor (init: DispatcherInit) {
    this.init = init
  }

  async dispatch (task: Omit<RemoteStageTask, 'jobId'>, needs: StageNeeds, options: DispatchOptions = {}): Promise<RemoteStageOutcome> {
    const maxAttempts = this.init.maxAttempts ?? DEFAULT_MAX_ATTEMPTS
    const attempts: AttemptRecord[] = []
    const tried = new Set<string>()

    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      options.signal?.throwIfAborted()
      options.onEvent?.({ type: 'searching', attempt })
      const provider = await this.pickProvider(needs, tried, options.signal)
      if (provider === undefined) {
        attempts.push({ error: 'no usable provider found', at: Date.now() })
        await this.backoff(attempt, maxAttempts, undefined, 'no usable provider found', options)
        continue
      }

      tried.add(provider.peerId)
      const jobId = newJobId()
      await options.beforeOffer?.(jobId, provider.peerId)
      options.onEvent?.({ type: 'dispatched', attempt, provider: provider.peerId, jobId })
      this.init.jobs?.begin({ jobId, role: 'requester', peer: provider.peerId, stage: task.stage, kind: task.kind, state: 'offered' })
      try {
        const outcome = await runRemoteStage(this.init.context, provider.record, { ...task, jobId }, {
          signal: options.signal,
          onAccepted: (accept) => {
            this.init.jobs?.update('requester', jobId, 'running')
            options.onEvent?.({ type: 'accepted', provider: provider.peerId, jobId, accept })
          },
          onProgress: (progress) => { options.onEvent?.({ type: 'progress', provider: provider.peerId, jobId, progress }) },
          judgeResult: options.judgeResult,
          onResult: options.onResult
        })
        this.init.outcomes?.report(provider.peerId, outcome.result.outcome === 'timed_out' ? 'timed_out' : 'completed', outcome.result.outcome)
        this.init.jobs?.finish('requester', jobId, { state: 'completed', outcome: outcome.result.outcome })
        return outcome
      } catch (err) {
        this.init.jobs?.finish('requester', jobId, { state: 'failed', outcome: failureOutcome(err, options.signal), error: (err as Error).message })
        if (options.signal?.aborted === true) {
          throw err
        }
        const reason = (err as Error).message
        attempts.push({ provider: provider.peerId, error: reason, at: Date.now() })
        this.reportFailure(provider.peerId, err)
        await this.backoff(attempt, maxAttempts, provider.peerId, reason, options)
      }
    }

    const summary = attempts.map((entry, index) => `attempt ${index + 1}${entry.provider === undefined ? '' : ` on ${entry.provider}`}: ${entry.error}`).join('; ')
    throw new DispatchError(`no provider could run the stage after ${attempts.length} attempts (${summary})`, attempts)
  }

  private async pickProvider (needs: StageNeeds, tried: Set<string>, signal?: AbortSignal): Promise<ReturnType<typeof chooseProviders>[number] | undefined> {
    const timeout = AbortSignal.timeout(this.init.discoveryTimeoutMs ?? 10_000)
    const found = await this.init.discovery.find(needs, { count: 3, signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]) })
    const fresh = found.filter(candidate => !tried.has(candidate.peerId))
    // A provider tried before is used again only when no other one is left.
    return chooseProviders(fresh.length > 0 ? fresh : found, 1)[0]
  }

  private reportFailure (peerId: string, err: unknown): void {
    if (!(err instanceof RemoteStageError)) {
      this.init.outcomes?.report(peerId, 'failed', (err as Error).message)
      return
    }
    switch (err.failure) {
      case 'rejected':
        this.init.outcomes?.report(peerId, 'rejected', err.reason ?? 'rejected')
        break
      case 'silent':
        this.init.outcomes?.report(peerId, 'timed_out', err.message)
        break
      case 'result':
        this.init.outcomes?.report(peerId, 'wrong_result', err.message)
        break
      default:
        this.init.outcomes?.report(peerId, 'failed', err.message)
    }
    if (err.failure === 'unreachable' || err.failure === 'silent' || err.failure === 'protocol') {
      this.init.discovery.markUnreachable(peerId)
    }
  }

  private async backoff (attempt: number, maxAttempts: number, provider: string | undefined, reason: string, options: DispatchOptions): Promise<void> {
    if (attempt >= maxAttempts) {
      return
    }
    const delayMs = Math.min(MAX_BACKOFF_MS, (this.init.backoffMs ?? DEFAULT_BACKOFF_MS) * 2 ** (attempt - 1))
    this.init.logger.info({ attempt, provider, delayMs }, `retrying the stage on another provider: ${reason}`)
    options.onEvent?.({ type: 'retrying', attempt, provider, reason, delayMs })
    await sleep(delayMs, undefined, { signal: options.signal })
  }
}
