import type { Stage } from '../cascade/stages.js'

/**
 * The view of the local sandbox executor that the stage protocol uses: start one
 * run, read its progress, wait for its result. The sandbox executor
 * implements it; this narrow view keeps the protocol independent of the
 * sandbox backends.
 */
export interface StageRunner {
  start: (spec: RunnerSpec) => Promise<RunnerRun>
}

export interface RunnerSpec {
  jobId: string
  image?: string
  command?: string[]
  agent?: { prompt: string, model?: string }
  input?: { archivePath: string }
  env?: Record<string, string>
  limits?: { timeoutMs?: number, memoryBytes?: number, cpus?: number }
  signal?: AbortSignal
  /** Promise that the sandbox's removal waits for; see `StageSpec.cleanupAfter` in src/exec. */
  cleanupAfter?: Promise<unknown>
  /** A git bundle to check out as the workspace; see RepositoryStageRunner. */
  repository?: { bundle: Uint8Array, docId: number, stage: Stage }
}

export type RunnerProgress =
  | { type: 'state', state: 'preparing' | 'running' | 'finishing' | 'finished' }
  | { type: 'log', stream: 'stdout' | 'stderr', line: string }
  | { type: 'dropped', lines: number }

export interface RunnerResult {
  outcome: 'succeeded' | 'failed' | 'timed_out' | 'out_of_memory' | 'output_limit' | 'disk_limit' | 'cancelled'
  exitCode: number | null
  stdout: string
  stdoutTruncated: boolean
  message: string
  metrics: { cpuSeconds: number, wallTimeMs: number, peakMemoryBytes: number }
  agent?: {
    output: string
    isError: boolean
    usage: { inputTokens: number, outputTokens: number, costUsd: number }
  }
  /** A bundle of the branch holding the agent's commit, for stages run on a repository. */
  bundle?: Uint8Array
}

export interface RunnerRun {
  progress: AsyncIterable<RunnerProgress>
  result: Promise<RunnerResult>
}
