/**
 * The contract between the stage executor and its callers (the local cascade
 * pipeline today, the network stage protocol later). One `StageSpec` in, a
 * bounded stream of `StageProgress` events and one `StageResult` out. A
 * backend (Docker, bubblewrap) implements `StageExecutor`; callers never see
 * containers, processes or mounts.
 */

/** Outcome of a stage run. Exactly one applies, and the first cause wins. */
export type StageOutcome =
  | 'succeeded'
  | 'failed'
  | 'timed_out'
  | 'out_of_memory'
  | 'output_limit'
  | 'disk_limit'
  | 'cancelled'

/** Resource limits of one stage; the executor fills what the spec leaves out. */
export interface StageLimits {
  /** Wall-clock deadline from the start of the run, in milliseconds. */
  timeoutMs: number
  /** Memory, swap included (swap is disabled), in bytes. */
  memoryBytes: number
  /** CPU quota in CPUs; fractions allowed. */
  cpus: number
  /** Maximum number of processes and threads. */
  pids: number
  /** Maximum stdout bytes kept; a stage that prints more fails with `output_limit`. */
  outputBytes: number
  /** Maximum size of everything in the workspace, in bytes. */
  workspaceBytes: number
  /** Maximum size of one file the stage writes (RLIMIT_FSIZE), in bytes. */
  fileSizeBytes: number
  /** Maximum open files per process (RLIMIT_NOFILE). */
  openFiles: number
  /** Size of the writable /tmp, in bytes. */
  tmpBytes: number
}

/** An agent run: the executor's configured agent command gets the prompt. */
export interface AgentTask {
  prompt: string
  /** Model name passed to the agent; the executor's default when missing. */
  model?: string
}

/** Input files for the workspace: a tar archive (optionally gzip) checked before anything is written. */
export interface StageInput {
  archivePath: string
}

/** One stage to run. Exactly one of `command` and `agent` is set. */
export interface StageSpec {
  /** Id of the job, used in labels, workspace names and logs; letters, digits, `-` and `_`. */
  jobId: string
  /** Image name from the executor's allow-list; the default image when missing. */
  image?: string
  command?: string[]
  agent?: AgentTask
  input?: StageInput
  /**
   * Variables the stage requests. The executor passes them after checking
   * their names. It never passes its own environment, and it rejects names
   * it sets itself (PATH, HOME, proxy and agent variables).
   */
  env?: Record<string, string>
  limits?: Partial<StageLimits>
  /** Aborting cancels the run: the sandbox is killed and the outcome is `cancelled`. */
  signal?: AbortSignal
  /**
   * Promise that the removal of the finished sandbox and the warm pool
   * refill wait for (at most HOUSEKEEPING_WAIT_MS), so that the container
   * work does not compete for CPU with delivering the result. The stage
   * protocol passes the end of its result and receipt exchange.
   */
  cleanupAfter?: Promise<unknown>
}

/** Token usage and cost reported by the agent's result line. */
export interface AgentUsage {
  inputTokens: number
  outputTokens: number
  cacheReadInputTokens: number
  cacheCreationInputTokens: number
  costUsd: number
}

/** Output, error flag and usage from the agent's final `result` line. */
export interface AgentResult {
  output: string
  isError: boolean
  numTurns?: number
  usage: AgentUsage
}

/** Resource use of a run, measured by the node, not reported by the stage. */
export interface StageMetrics {
  cpuSeconds: number
  wallTimeMs: number
  /** Highest memory use of the sandbox, in bytes; 0 when the backend could not measure it. */
  peakMemoryBytes: number
}

export interface StageResult {
  jobId: string
  outcome: StageOutcome
  /** Exit code of the stage's command; null when it was killed before it exited. */
  exitCode: number | null
  /** Standard output, cut at `limits.outputBytes` (UTF-8, a cut character is replaced). */
  stdout: string
  /** Bytes of stdout the stage printed, including any beyond the cap. */
  stdoutBytes: number
  stdoutTruncated: boolean
  /** A sentence for people on why the run ended this way and what to change. */
  message: string
  metrics: StageMetrics
  /** Set for agent stages whose agent printed a result line. */
  agent?: AgentResult
  backend: SandboxBackend
  runtime: SandboxRuntime
}

/** Progress events; log lines are bounded in length and count. */
export type StageProgress =
  | { type: 'state', jobId: string, state: StageState, at: string }
  | { type: 'log', jobId: string, stream: 'stdout' | 'stderr', line: string, at: string }
  | { type: 'dropped', jobId: string, lines: number, at: string }

export type StageState = 'preparing' | 'running' | 'finishing' | 'finished'

/** A started run: its progress events, and its result once it ended. */
export interface StageRun {
  jobId: string
  /** Progress events in order, ending after the `finished` state. The run does not wait for a reader, because the queue drops log lines when full. */
  progress: AsyncIterable<StageProgress>
  /** Resolves once the stage's processes are dead and its workspace was collected. */
  result: Promise<StageResult>
  /** Resolves once the sandbox and the workspace are removed, after `result`. */
  cleanedUp: Promise<void>
}

export type SandboxBackend = 'docker' | 'bwrap' | 'none'

export type SandboxRuntime = 'runsc' | 'runc' | 'bwrap' | 'none'

/**
 * The isolation a node really provides: `gvisor` (a user-space kernel),
 * `container` (runc: namespaces, seccomp, cgroups, no capabilities),
 * `namespaces` (bubblewrap), or `none` (the node shares nothing).
 */
export type SandboxIsolation = 'gvisor' | 'container' | 'namespaces' | 'none'

/** Sandbox facts reported by `status`. */
export interface SandboxInfo {
  backend: SandboxBackend
  runtime: SandboxRuntime
  isolation: SandboxIsolation
  /** Reason the sandbox is not the strongest one, or that there is none, with the fix. */
  reason?: string
}

/** Counts and job ids of the leftovers `removeLeftovers` removed. */
export interface LeftoverReport {
  containers: number
  workspaces: number
  processes: number
  /** Ids of the jobs whose leftovers were removed (warm pool slots excluded). */
  jobs: string[]
}

export interface StageExecutor {
  readonly info: SandboxInfo
  /** Starts a run; throws a `StageSpecError` or `StageInputError` before anything runs when the spec is invalid. */
  start: (spec: StageSpec) => Promise<StageRun>
  /** Starts a run and waits for its result. */
  run: (spec: StageSpec) => Promise<StageResult>
  /** Removes sandboxes, relays and workspaces this node left behind when it died. */
  removeLeftovers: (signal?: AbortSignal) => Promise<LeftoverReport>
  /** Cancels running stages, removes warm sandboxes and stops the egress proxy. */
  close: () => Promise<void>
}
