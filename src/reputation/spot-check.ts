import { randomBytes } from 'node:crypto'
import { bytesEqual } from '../records/canonical.js'
import { sha256, toHex } from '../records/hash.js'

/** The default share of stages that are spot checked once a provider is past probation. */
export const DEFAULT_SPOT_CHECK_SHARE = 0.1
/**
 * Checks a provider must pass with this requester before it gets a stage
 * that is not checked. Until then every stage it gets is checked.
 */
export const DEFAULT_PROBATION_CHECKS = 3

/**
 * The check of one stage: none, a canary command stage whose output the
 * requester computed itself, or (for a deterministic stage) a second run on
 * another provider whose result is compared.
 */
export type SpotCheck = 'none' | 'canary' | 'duplicate'

export interface SpotCheckOptions {
  /** Share of stages checked after probation, 0..1. */
  share?: number
  probationChecks?: number
  /** Uniform in [0, 1); tests and simulations pass a seeded one. */
  random?: () => number
}

/**
 * Decides which stages a requester checks. Each provider starts on
 * probation: its stages are all checked until it has passed
 * `probationChecks` of them, and a failed check puts it back on probation.
 */
export class SpotCheckPolicy {
  readonly share: number
  readonly probationChecks: number
  private readonly random: () => number
  private readonly passed = new Map<string, number>()

  constructor (options: SpotCheckOptions = {}) {
    const share = options.share ?? DEFAULT_SPOT_CHECK_SHARE
    if (!(share >= 0 && share <= 1)) {
      throw new RangeError(`spot check share must be from 0 to 1, got ${share}`)
    }
    this.share = share
    this.probationChecks = options.probationChecks ?? DEFAULT_PROBATION_CHECKS
    this.random = options.random ?? Math.random
  }

  /** Chooses how to check one stage sent to the provider; `deterministic` for command stages. */
  choose (provider: string, deterministic: boolean): SpotCheck {
    const onProbation = this.checksPassed(provider) < this.probationChecks
    if (!onProbation && this.random() >= this.share) {
      return 'none'
    }
    return deterministic ? 'duplicate' : 'canary'
  }

  isOnProbation (provider: string): boolean {
    return this.checksPassed(provider) < this.probationChecks
  }

  checksPassed (provider: string): number {
    return this.passed.get(provider) ?? 0
  }

  /** Records a check's result; a failure also puts the provider back on probation. */
  recordCheck (provider: string, passed: boolean): void {
    if (passed) {
      this.passed.set(provider, this.checksPassed(provider) + 1)
    } else {
      this.passed.delete(provider)
    }
  }
}

/** A command stage whose output only a provider that really ran it can know. */
export interface Canary {
  /** The command to run, as argv for the sandbox. */
  command: string[]
  /** SHA-256 of the expected standard output. */
  expectedOutputHash: Uint8Array
}

/** The number of lines a canary hashes by default; about a second of CPU in a busybox sandbox. */
export const DEFAULT_CANARY_LINES = 200_000

/**
 * Creates a canary: hash a fresh random nonce followed by the numbers 1 to
 * `lines`, one a line, with sha256sum. The requester computes the expected
 * output itself, and the nonce stops a provider from reusing an old output.
 */
export function createCanary (lines = DEFAULT_CANARY_LINES, nonce = randomBytes(16)): Canary {
  if (!Number.isInteger(lines) || lines < 1) {
    throw new RangeError(`canary lines must be a positive integer, got ${lines}`)
  }
  const nonceHex = toHex(nonce)
  const script = `{ echo ${nonceHex}; seq 1 ${lines}; } | sha256sum`

  const input: string[] = [nonceHex]
  for (let line = 1; line <= lines; line++) {
    input.push(String(line))
  }
  const digest = toHex(sha256(new TextEncoder().encode(input.join('\n') + '\n')))
  const expectedOutput = `${digest}  -\n`
  return { command: ['sh', '-c', script], expectedOutputHash: sha256(new TextEncoder().encode(expectedOutput)) }
}

/** True when the provider's standard output is the canary's expected output. */
export function canaryPassed (canary: Canary, output: Uint8Array): boolean {
  return bytesEqual(sha256(output), canary.expectedOutputHash)
}

export interface DuplicateResult {
  provider: string
  resultHash: Uint8Array
}

export interface DuplicateVerdict {
  /** The result hash that a majority returned, or undefined when there is no majority. */
  agreed?: Uint8Array
  /** Providers whose result differs from the majority's: each counts as a wrong result. */
  wrong: string[]
}

/**
 * Compares the results of one deterministic stage run on several providers.
 * Two that agree pass. Two that differ give no majority, so the requester
 * runs the stage on a third provider and calls this again with all three.
 */
export function judgeDuplicates (results: readonly DuplicateResult[]): DuplicateVerdict {
  const groups: Array<{ hash: Uint8Array, providers: string[] }> = []
  for (const result of results) {
    const group = groups.find(candidate => bytesEqual(candidate.hash, result.resultHash))
    if (group === undefined) {
      groups.push({ hash: result.resultHash, providers: [result.provider] })
    } else {
      group.providers.push(result.provider)
    }
  }

  const majority = groups.find(group => group.providers.length * 2 > results.length)
  if (majority === undefined) {
    return { wrong: [] }
  }
  const wrong = results.filter(result => !bytesEqual(result.resultHash, majority.hash)).map(result => result.provider)
  return { agreed: majority.hash, wrong }
}
