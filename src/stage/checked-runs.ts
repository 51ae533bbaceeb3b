import { verifyReceipt } from '../credits/receipt.js'
import { EmdxError } from '../node/errors.js'
import { bytesEqual } from '../records/canonical.js'
import { judgeDuplicates } from '../reputation/spot-check.js'
import { canaryResultPassed, canaryTask, createCanary, DuplicateRound, resultDigest } from './spot-checks.js'
import type { Receipt } from '../credits/receipt.js'
import type { Candidate } from '../dht/ranking.js'
import type { DuplicateResult } from '../reputation/spot-check.js'
import type { ProviderOutcome } from './dispatcher.js'
import type { RemoteStageOptions, RemoteStageOutcome, RemoteStageTask, ResultCheckpoint } from './requester.js'

type StageTask = Omit<RemoteStageTask, 'jobId'>

/**
 * A spot check found a wrong result, or the runs of a duplicated stage did
 * not agree. The outcomes are already in reputation; the dispatcher moves
 * the stage to another provider.
 */
export class SpotCheckError extends EmdxError {
  constructor (message: string) {
    super('ERR_SPOT_CHECK', message)
  }
}

/** The dispatcher's operations that the checked runs use. */
export interface CheckHost {
  /** Runs one job on the provider through the stage protocol; `visible` runs report events and hooks to the caller. */
  run: (provider: Candidate, task: StageTask, options: RemoteStageOptions, visible: boolean) => Promise<RemoteStageOutcome>
  /** A usable provider that is not in `exclude`, for another run of the stage. */
  pickAnother: (exclude: ReadonlySet<string>) => Candidate | undefined
  /** Countersigns a held result, records it and delivers the receipt to its executor. */
  settleLate: (checkpoint: ResultCheckpoint) => Promise<Receipt>
  report: (peer: string, outcome: ProviderOutcome, detail: string) => void
  /** Reports a run that ended without a result, as the dispatcher reports any failed attempt. */
  reportFailure: (peer: string, err: unknown) => void
  recordCheck: (peer: string, passed: boolean) => void
}

/**
 * Sends the provider a canary command stage, through the stage protocol
 * and paid like any stage, and compares its output with the one computed
 * here. A wrong output is not paid, counts as a wrong result and throws a
 * SpotCheckError. Any other failure throws the RemoteStageError of the run.
 */
export async function runCanary (host: CheckHost, provider: Candidate, task: StageTask, canaryLines: number | undefined, signal?: AbortSignal): Promise<void> {
  const canary = createCanary(canaryLines)
  const peer = provider.peerId
  let verdict: 'passed' | 'wrong' | 'failed' | undefined
  try {
    await host.run(provider, canaryTask(canary, task), {
      signal,
      judgeResult: (result) => {
        if (result.outcome !== 'succeeded') {
          verdict = 'failed'
          return `the canary stage ended ${result.outcome}: ${result.message}`
        }
        verdict = canaryResultPassed(canary, result) ? 'passed' : 'wrong'
        return verdict === 'passed' ? undefined : 'the canary output is not the expected one'
      }
    }, false)
  } catch (err) {
    if (verdict !== 'wrong') {
      throw err
    }
    host.recordCheck(peer, false)
    host.report(peer, 'wrong_result', 'wrong canary output')
    throw new SpotCheckError(`provider ${peer} returned a wrong canary output`)
  }
  host.recordCheck(peer, true)
  host.report(peer, 'completed', 'canary passed')
}

interface TrackedRun {
  provider: Candidate
  outcome?: RemoteStageOutcome
  error?: unknown
  /** The checked result, for a run that must be settled after the comparison. */
  checkpoint?: ResultCheckpoint
}

/**
 * Runs a deterministic command stage on two providers at once and compares
 * their results. When they differ, a third provider decides, and the one
 * that disagrees with the majority counts as a wrong result and is not
 * paid. Matching results are paid, some of them after the comparison
 * through `settleLate`. Without a majority no run is paid, and a
 * SpotCheckError moves the stage on. When one run fails, the other's result
 * is used unchecked.
 */
export async function runDuplicated (host: CheckHost, first: Candidate, second: Candidate, task: StageTask, options: RemoteStageOptions): Promise<RemoteStageOutcome> {
  const round = new DuplicateRound([first.peerId, second.peerId])
  const judgeFor = (peer: string): RemoteStageOptions['judgeResult'] => async (result, checkpoint) => {
    const refusal = await options.judgeResult?.(result, checkpoint)
    if (refusal !== undefined) {
      round.fail(peer)
      return refusal
    }
    return await round.judge(peer, result, checkpoint)
  }
  const track = async (provider: Candidate, runOptions: RemoteStageOptions, visible: boolean): Promise<TrackedRun> => {
    try {
      return { provider, outcome: await host.run(provider, task, { ...runOptions, judgeResult: judgeFor(provider.peerId) }, visible) }
    } catch (err) {
      round.fail(provider.peerId)
      return { provider, error: err }
    }
  }

  // Only the first run reports progress and checkpoints to the caller.
  const runs = await Promise.all([track(first, options, true), track(second, { signal: options.signal }, false)])
  options.signal?.throwIfAborted()
  const answered = runs.filter(run => round.runs.get(run.provider.peerId)?.digest !== undefined)
  const [primary, secondary] = runs as [TrackedRun, TrackedRun]

  if (answered.length === 0) {
    host.reportFailure(secondary.provider.peerId, secondary.error)
    throw primary.error
  }
  for (const run of runs) {
    if (!answered.includes(run)) {
      host.reportFailure(run.provider.peerId, run.error)
    }
  }
  if (answered.length === 1) {
    // Nothing to compare with: the result is used, and the provider is not counted as checked.
    const only = answered[0] as TrackedRun
    host.report(only.provider.peerId, 'completed', 'unchecked: the second run failed')
    return await outcomeOf(host, only, round)
  }

  const results: DuplicateResult[] = answered.map(run => ({ provider: run.provider.peerId, resultHash: round.runs.get(run.provider.peerId)?.digest as Uint8Array }))
  let verdict = judgeDuplicates(results)
  if (verdict.agreed === undefined) {
    const tieBreak = await runTieBreak(host, new Set(results.map(result => result.provider)), task, results, options.signal)
    if (tieBreak !== undefined) {
      answered.push(tieBreak.run)
      results.push(tieBreak.result)
      verdict = judgeDuplicates(results)
    }
  }

  if (verdict.agreed === undefined) {
    for (const result of results) {
      host.recordCheck(result.provider, false)
      host.report(result.provider, 'failed', 'no two runs of the stage agreed')
    }
    throw new SpotCheckError(`the ${results.length} runs of the stage returned different results and no two agreed`)
  }

  let chosen: RemoteStageOutcome | undefined
  for (const run of answered) {
    const peer = run.provider.peerId
    if (verdict.wrong.includes(peer)) {
      host.recordCheck(peer, false)
      host.report(peer, 'wrong_result', 'the result differs from the majority of runs')
      continue
    }
    host.recordCheck(peer, true)
    host.report(peer, 'completed', 'the result matches the other runs')
    const outcome = await outcomeOf(host, run, round)
    chosen ??= outcome
  }
  return chosen as RemoteStageOutcome
}

/**
 * Runs the stage on a third provider to break a tie. Its result is paid only
 * when it matches one of the two; undefined when no provider is left or the
 * run gives no result.
 */
async function runTieBreak (host: CheckHost, exclude: ReadonlySet<string>, task: StageTask, results: DuplicateResult[], signal?: AbortSignal): Promise<{ run: TrackedRun, result: DuplicateResult } | undefined> {
  const third = host.pickAnother(exclude)
  if (third === undefined) {
    return undefined
  }
  let digest: Uint8Array | undefined
  let checkpoint: ResultCheckpoint | undefined
  try {
    const outcome = await host.run(third, task, {
      signal,
      judgeResult: (result, received) => {
        digest = resultDigest(result)
        checkpoint = received
        const matches = results.some(result => bytesEqual(result.resultHash, digest as Uint8Array))
        return matches ? undefined : 'the result matches neither earlier run'
      }
    }, false)
    return { run: { provider: third, outcome }, result: { provider: third.peerId, resultHash: digest as Uint8Array } }
  } catch (err) {
    if (digest === undefined) {
      host.reportFailure(third.peerId, err)
      return undefined
    }
    return { run: { provider: third, error: err, checkpoint }, result: { provider: third.peerId, resultHash: digest } }
  }
}

/** Returns the outcome of a run that was right: as it came, or settled now from its held checkpoint. */
async function outcomeOf (host: CheckHost, run: TrackedRun, round: DuplicateRound): Promise<RemoteStageOutcome> {
  if (run.outcome !== undefined) {
    return run.outcome
  }
  const checkpoint = run.checkpoint ?? round.runs.get(run.provider.peerId)?.checkpoint
  if (checkpoint === undefined) {
    throw run.error
  }
  const receipt = await host.settleLate(checkpoint)
  return {
    jobId: checkpoint.jobId,
    executor: checkpoint.executor,
    result: checkpoint.result,
    receipt,
    receiptBody: verifyReceipt(receipt, { countersigned: true }),
    price: checkpoint.terms.price
  }
}
