import { setTimeout as sleep } from 'node:timers/promises'
import { chooseProvider } from '../dht/ranking.js'
import { EmdxError } from '../node/errors.js'
import { chooseProviders as splitByProbation } from '../reputation/selection.js'
import { runCanary, runDuplicated, SpotCheckError } from './checked-runs.js'
import { failureOutcome } from './job-registry.js'
import { settleFromCheckpoint } from './receipt-delivery.js'
import { newJobId, RemoteStageError, runRemoteStage } from './requester.js'
import type { Discovery } from '../dht/discovery.js'
import type { Candidate, StageNeeds } from '../dht/ranking.js'
import type { Logger } from '../node/logger.js'
import type { TrustView } from '../reputation/selection.js'
import type { SpotCheckPolicy } from '../reputation/spot-check.js'
import type { CheckHost } from './checked-runs.js'
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

/** The requester's reputation of providers and its spot check policy. */
export interface DispatchTrust {
  view: TrustView
  spotChecks: SpotCheckPolicy
}

export interface DispatcherInit {
  context: RemoteStageContext
  discovery: Discovery
  logger: Logger
  outcomes?: OutcomeReporter
  /**
   * Without it, providers are chosen by discovery's ranking alone and no
   * stage is spot checked.
   */
  trust?: DispatchTrust
  /** Lines a canary hashes; the default is about a second of CPU. */
  canaryLines?: number
  /** Called with each job id offered to a provider, canaries and duplicate runs included. */
  onJobSent?: (jobId: string, provider: string) => void
  /** Attempts on different providers before giving up. */
  maxAttempts?: number
  /** Wait before the second attempt; it doubles with each attempt, up to 30 s. */
  backoffMs?: number
  /** Time allowed to find providers for one attempt. */
  discoveryTimeoutMs?: number
  /** Records each job sent out, for the dashboard and the metrics. */
  jobs?: JobRegistry
}

const DEFAULT_MAX_ATTEMPTS = 4
/** Providers discovery looks for per attempt: enough for a second run and a tie-break. */
const CANDIDATE_COUNT = 5
const DEFAULT_BACKOFF_MS = 500
const MAX_BACKOFF_MS = 30_000

/**
 * Sends a stage to the network: finds providers, picks one of the best, runs
 * the stage there, and on a failure or silence moves it to another provider
 * after an exponential back-off, up to a number of attempts. Each attempt's
 * outcome goes to reputation. A stage is paid once: only the attempt that
 * returns a result produces a countersigned receipt. With `trust`, the spot
 * checks come on top: a canary is a paid stage of its own, and each
 * matching run of a duplicated command stage is paid.
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
      // A later attempt walks the DHT anew: the providers of the last walk were not enough.
      const candidates = await this.findCandidates(needs, attempt > 1, options.signal)
      // A provider tried before is used again only when no other one is left.
      const provider = this.choose(candidates, tried) ?? this.choose(candidates, new Set())
      if (provider === undefined) {
        attempts.push({ error: 'no usable provider found', at: Date.now() })
        await this.backoff(attempt, maxAttempts, undefined, 'no usable provider found', options)
        continue
      }

      tried.add(provider.peerId)
      try {
        return await this.attempt(provider, candidates, tried, task, attempt, options)
      } catch (err) {
        if (options.signal?.aborted === true) {
          throw err
        }
        const reason = (err as Error).message
        attempts.push({ provider: provider.peerId, error: reason, at: Date.now() })
        if (!(err instanceof SpotCheckError)) {
          this.reportFailure(provider.peerId, err)
        }
        await this.backoff(attempt, maxAttempts, provider.peerId, reason, options)
      }
    }

    const summary = attempts.map((entry, index) => `attempt ${index + 1}${entry.provider === undefined ? '' : ` on ${entry.provider}`}: ${entry.error}`).join('; ')
    throw new DispatchError(`no provider could run the stage after ${attempts.length} attempts (${summary})`, attempts)
  }

  /**
   * One attempt on the chosen provider, with the spot check the policy picks
   * for it: a canary first, or a second run on another provider for a
   * deterministic command stage (a canary when no other provider is found).
   */
  private async attempt (provider: Candidate, candidates: Candidate[], tried: Set<string>, task: Omit<RemoteStageTask, 'jobId'>, attempt: number, options: DispatchOptions): Promise<RemoteStageOutcome> {
    const host = this.checkHost(attempt, candidates, options)
    const check = this.init.trust?.spotChecks.choose(provider.peerId, task.kind === 'command') ?? 'none'
    const runOptions: RemoteStageOptions = { signal: options.signal, judgeResult: options.judgeResult, onResult: options.onResult }

    if (check === 'duplicate') {
      const second = this.choose(candidates, tried)
      if (second !== undefined) {
        tried.add(second.peerId)
        this.init.logger.debug({ provider: provider.peerId, second: second.peerId }, 'running the stage on two providers to compare the results')
        return await runDuplicated(host, provider, second, task, runOptions)
      }
    }
    if (check !== 'none') {
      this.init.logger.debug({ provider: provider.peerId }, 'sending the provider a canary stage first')
      await runCanary(host, provider, task, this.init.canaryLines, options.signal)
    }

    const outcome = await host.run(provider, task, runOptions, true)
    this.init.outcomes?.report(provider.peerId, outcome.result.outcome === 'timed_out' ? 'timed_out' : 'completed', outcome.result.outcome)
    return outcome
  }

  /** The dispatcher's side of the checked runs: running jobs, picking providers, reporting outcomes. */
  private checkHost (attempt: number, candidates: Candidate[], options: DispatchOptions): CheckHost {
    return {
      run: async (provider, task, runOptions, visible) => await this.runJob(provider, task, runOptions, visible ? { attempt, options } : undefined),
      pickAnother: (exclude) => this.choose(candidates, exclude),
      settleLate: async (checkpoint) => await settleFromCheckpoint(this.init.context, checkpoint, options.signal),
      report: (peer, outcome, detail) => { this.init.outcomes?.report(peer, outcome, detail) },
      reportFailure: (peer, err) => { this.reportFailure(peer, err) },
      recordCheck: (peer, passed) => { this.init.trust?.spotChecks.recordCheck(peer, passed) }
    }
  }

  /** Runs one job on the provider; a visible run is the stage itself, so the caller sees its events and hooks. */
  private async runJob (provider: Candidate, task: Omit<RemoteStageTask, 'jobId'>, runOptions: RemoteStageOptions, visible?: { attempt: number, options: DispatchOptions }): Promise<RemoteStageOutcome> {
    const jobId = newJobId()
    const options = visible?.options
    if (visible !== undefined) {
      await options?.beforeOffer?.(jobId, provider.peerId)
      options?.onEvent?.({ type: 'dispatched', attempt: visible.attempt, provider: provider.peerId, jobId })
    }
    this.init.onJobSent?.(jobId, provider.peerId)
    this.init.jobs?.begin({ jobId, role: 'requester', peer: provider.peerId, stage: task.stage, kind: task.kind, state: 'offered' })
    try {
      const outcome = await runRemoteStage(this.init.context, provider.record, { ...task, jobId }, {
        ...runOptions,
        onAccepted: (accept) => {
          this.init.jobs?.update('requester', jobId, 'running')
          options?.onEvent?.({ type: 'accepted', provider: provider.peerId, jobId, accept })
        },
        onProgress: (progress) => { options?.onEvent?.({ type: 'progress', provider: provider.peerId, jobId, progress }) },
        onResult: visible === undefined ? undefined : runOptions.onResult
      })
      this.init.jobs?.finish('requester', jobId, { state: 'completed', outcome: outcome.result.outcome })
      return outcome
    } catch (err) {
      this.init.jobs?.finish('requester', jobId, { state: 'failed', outcome: failureOutcome(err, runOptions.signal), error: (err as Error).message })
      throw err
    }
  }

  private async findCandidates (needs: StageNeeds, fresh: boolean, signal?: AbortSignal): Promise<Candidate[]> {
    const timeout = AbortSignal.timeout(this.init.discoveryTimeoutMs ?? 10_000)
    return await this.init.discovery.find(needs, { count: CANDIDATE_COUNT, signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]), fresh })
  }

  /**
   * Picks a provider not in `exclude` and not distrusted. Providers past
   * probation with this requester come first; within each group the choice
   * follows discovery's ranking, at random among the best few.
   */
  private choose (candidates: Candidate[], exclude: ReadonlySet<string>): Candidate | undefined {
    const usable = candidates.filter(candidate => !exclude.has(candidate.peerId))
    const trust = this.init.trust
    if (trust === undefined) {
      return chooseProvider(usable, () => true)
    }
    const { verified } = splitByProbation(usable.map(candidate => candidate.peerId), trust.view, trust.spotChecks)
    const allowed = usable.filter(candidate => !trust.view.isDistrusted(candidate.peerId))
    return chooseProvider(allowed, peer => verified.includes(peer))
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
        // A result refused for its content or a receipt that does not
        // verify is a failure; only a spot check proves a wrong result.
        this.init.outcomes?.report(peerId, 'failed', err.message)
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
