import { setTimeout as sleep } from 'node:timers/promises'
import { bytesEqual, encodeCanonical } from '../records/canonical.js'
import { sha256 } from '../records/hash.js'
import { canaryPassed, createCanary } from '../reputation/spot-check.js'
import type { Canary } from '../reputation/spot-check.js'
import type { StageResultPayload } from './messages.js'
import type { RemoteStageTask, ResultCheckpoint } from './requester.js'

/** The maximum a canary stage may cost, in millicredits: 1 credit, 100 CPU seconds at the default price, so that a slow provider is still paid. */
export const CANARY_MAX_CREDITS = 1000
/** The stage name of a canary, the same as that of `emdx-node run`, so that a canary looks like an ordinary command stage. */
export const CANARY_STAGE = 'command'
/** Wall-clock limit of a canary stage. */
export const CANARY_TIMEOUT_MS = 60_000
const CANARY_MEMORY_BYTES = 128 * 1024 ** 2
/**
 * How long the first result of a duplicated stage waits for the second one
 * before it is held unpaid until the comparison. It stays well under the
 * executor's 30 s wait for the countersignature.
 */
export const DUPLICATE_WAIT_MS = 20_000

/** Builds the command stage that checks a provider with a canary: small needs and a short timeout. */
export function canaryTask (canary: Canary, stage: Omit<RemoteStageTask, 'jobId'>): Omit<RemoteStageTask, 'jobId'> {
  return {
    kind: 'command',
    stage: CANARY_STAGE,
    payload: { kind: 'command', command: canary.command },
    needs: { cpus: Math.min(1, stage.needs.cpus), memoryBytes: Math.min(CANARY_MEMORY_BYTES, stage.needs.memoryBytes) },
    timeoutMs: CANARY_TIMEOUT_MS,
    maxCredits: Math.min(CANARY_MAX_CREDITS, stage.maxCredits)
  }
}

/** True when a canary stage succeeded and printed exactly the output the requester computed. */
export function canaryResultPassed (canary: Canary, result: StageResultPayload): boolean {
  return result.outcome === 'succeeded' && !result.stdoutTruncated && canaryPassed(canary, new TextEncoder().encode(result.stdout))
}

export { createCanary }

/**
 * Hashes the part of a command stage's result that a deterministic command
 * reproduces: outcome, exit code and standard output. The metrics differ
 * from run to run, so they are left out.
 */
export function resultDigest (result: StageResultPayload): Uint8Array {
  return sha256(encodeCanonical({ outcome: result.outcome, exitCode: result.exitCode, stdout: result.stdout, stdoutTruncated: result.stdoutTruncated }))
}

/** The state of one run of a duplicated stage. */
export interface DuplicateRun {
  provider: string
  digest?: Uint8Array
  checkpoint?: ResultCheckpoint
  /**
   * An `accepted` run was countersigned on its stream, because the
   * comparison matched or could not be made. A `held` run was refused on its
   * stream and is kept unpaid until the comparison decides. A `failed` run
   * returned no result.
   */
  state: 'running' | 'accepted' | 'held' | 'failed'
}

/**
 * The rendezvous of the runs of one duplicated stage. Each run's result
 * judge waits here for the other runs, up to `waitMs`. Matching results are
 * countersigned at once. A result that differs, or whose sibling is late, is
 * held: refused on its stream, kept as a checkpoint, and settled later if
 * the comparison shows it was right. A result whose sibling failed is
 * accepted without a comparison.
 */
export class DuplicateRound {
  readonly runs = new Map<string, DuplicateRun>()
  private readonly waitMs: number
  private wake?: () => void
  private changed: Promise<void>

  constructor (providers: readonly string[], waitMs = DUPLICATE_WAIT_MS) {
    for (const provider of providers) {
      this.runs.set(provider, { provider, state: 'running' })
    }
    this.waitMs = waitMs
    this.changed = this.nextChange()
  }

  /** The result judge of one run: undefined to countersign it now, or the reason it is held. */
  async judge (provider: string, result: StageResultPayload, checkpoint: ResultCheckpoint): Promise<string | undefined> {
    const run = this.runOf(provider)
    run.digest = resultDigest(result)
    run.checkpoint = checkpoint
    this.notify()

    const deadline = Date.now() + this.waitMs
    while (this.others(provider).some(other => other.state === 'running' && other.digest === undefined) && Date.now() < deadline) {
      await Promise.race([this.changed, sleep(Math.max(0, deadline - Date.now()), undefined, { ref: false })])
    }

    const others = this.others(provider)
    if (others.every(other => other.state === 'failed')) {
      run.state = 'accepted'
      return undefined
    }
    const compared = others.filter(other => other.digest !== undefined)
    if (compared.length === others.length && compared.every(other => bytesEqual(other.digest as Uint8Array, run.digest as Uint8Array))) {
      run.state = 'accepted'
      return undefined
    }
    run.state = 'held'
    return compared.length < others.length
      ? 'held until the result of the second run arrives for comparison'
      : 'held because the second run returned a different result'
  }

  /** Marks a run that ended without a result, so that the others stop waiting for it. */
  fail (provider: string): void {
    const run = this.runOf(provider)
    if (run.digest === undefined) {
      run.state = 'failed'
      this.notify()
    }
  }

  private runOf (provider: string): DuplicateRun {
    const run = this.runs.get(provider)
    if (run === undefined) {
      throw new Error(`provider ${provider} has no run in this comparison`)
    }
    return run
  }

  private others (provider: string): DuplicateRun[] {
    return [...this.runs.values()].filter(run => run.provider !== provider)
  }

  private async nextChange (): Promise<void> {
    return await new Promise<void>(resolve => { this.wake = resolve })
  }

  private notify (): void {
    const wake = this.wake
    this.changed = this.nextChange()
    wake?.()
  }
}
