import { parseAgentResult } from './agent.js'
import { describeOutcome } from './outcome.js'
import { CappedOutput, LineSplitter } from './output.js'
import { isWorkspaceFull } from './workspace.js'
import type { CgroupStats } from './cgroup.js'
import type { ProgressChannel } from './progress.js'
import type { LaunchedSandbox, PreparedSandbox } from './sandbox.js'
import type { SandboxInfo, StageLimits, StageOutcome, StageResult } from './types.js'
import type { Logger } from '../node/logger.js'

/** How often a workspace without a kernel size cap is measured, in milliseconds. */
const WORKSPACE_POLL_MS = 500

/** One run, after its spec was checked and its sandbox prepared. */
export interface StageRunInit {
  jobId: string
  limits: StageLimits
  command: string[]
  env: Record<string, string>
  egress: boolean
  isAgent: boolean
  prepared: PreparedSandbox
  progress: ProgressChannel
  signal: AbortSignal
  info: SandboxInfo
  logger: Logger
  /** Reads results from the workspace once every process of the run is dead. */
  collect?: (workspacePath: string) => Promise<void>
}

interface RunEnd {
  stopReason?: StageOutcome
  exitCode: number | null
  stats: CgroupStats
  diskFull: boolean
  wallTimeMs: number
}

/**
 * Runs the command in the prepared sandbox and enforces the limits the node
 * watches itself: the wall-clock deadline, the output cap, cancellation and,
 * for a workspace without a kernel cap, its size. The first cause that stops
 * the run decides its outcome. The sandbox is killed before the result is
 * returned; removing it (`prepared.discard`) is left to the caller.
 */
export async function executeStage (init: StageRunInit): Promise<StageResult> {
  const stdout = new CappedOutput(init.limits.outputBytes, () => { control.stop('output_limit') })
  const stdoutLines = new LineSplitter(line => { init.progress.log('stdout', line) })
  const stderrLines = new LineSplitter(line => { init.progress.log('stderr', line) })
  const control = new RunControl(init.logger)

  const end = await watchRun(init, control, {
    onStdout: (chunk) => { stdout.write(chunk); stdoutLines.write(chunk) },
    onStderr: (chunk) => { stderrLines.write(chunk) }
  })
  stdoutLines.end()
  stderrLines.end()

  const outcome = decideOutcome({ ...end, outputExceeded: stdout.exceeded, oomKills: end.stats.oomKills })
  const killedByNode = end.stopReason !== undefined && end.stopReason !== 'output_limit'
  const result: StageResult = {
    jobId: init.jobId,
    outcome,
    exitCode: killedByNode ? null : end.exitCode,
    stdout: stdout.text(),
    stdoutBytes: stdout.totalBytes,
    stdoutTruncated: stdout.exceeded,
    message: describeOutcome(outcome, end.exitCode, init.limits),
    metrics: { cpuSeconds: end.stats.cpuSeconds, wallTimeMs: end.wallTimeMs, peakMemoryBytes: end.stats.peakMemoryBytes },
    backend: init.info.backend,
    runtime: init.info.runtime
  }
  if (init.isAgent) {
    addAgentResult(result)
  }
  return result
}

/** The stop switch of one run: the first reason wins and kills the sandbox. */
class RunControl {
  stopReason?: StageOutcome
  sandbox?: LaunchedSandbox
  private readonly logger: Logger

  constructor (logger: Logger) {
    this.logger = logger
  }

  stop (reason: StageOutcome): void {
    if (this.stopReason !== undefined) {
      return
    }
    this.stopReason = reason
    this.logger.info({ reason }, 'stopping stage')
    this.killSandbox()
  }

  killSandbox (): void {
    void this.sandbox?.kill().catch((err: unknown) => { this.logger.warn({ err }, 'cannot kill sandbox') })
  }
}

async function watchRun (init: StageRunInit, control: RunControl, output: { onStdout: (chunk: Buffer) => void, onStderr: (chunk: Buffer) => void }): Promise<RunEnd> {
  const { prepared, limits, signal } = init
  const onAbort = (): void => { control.stop('cancelled') }
  signal.addEventListener('abort', onAbort, { once: true })
  const startedAt = performance.now()
  const deadline = setTimeout(() => { control.stop('timed_out') }, limits.timeoutMs)
  const diskWatch = prepared.workspace.capped
    ? undefined
    : setInterval(() => { void workspaceFull(prepared, init.logger).then(full => { if (full) control.stop('disk_limit') }) }, WORKSPACE_POLL_MS)

  let exitCode: number | null = null
  let stats: CgroupStats = { cpuSeconds: 0, peakMemoryBytes: 0, oomKills: 0 }
  try {
    if (signal.aborted) {
      control.stop('cancelled')
    } else {
      control.sandbox = await prepared.launch({ command: init.command, env: init.env, egress: init.egress, ...output })
      init.progress.state('running')
      if (control.stopReason !== undefined) {
        control.killSandbox()
      }
      exitCode = await control.sandbox.exited
      init.progress.state('finishing')
      stats = await control.sandbox.stats()
      await control.sandbox.kill()
    }
  } finally {
    clearTimeout(deadline)
    clearInterval(diskWatch)
    signal.removeEventListener('abort', onAbort)
  }
  const wallTimeMs = performance.now() - startedAt

  const diskFull = exitCode !== 0 && await workspaceFull(prepared, init.logger)
  if (init.collect !== undefined) {
    await init.collect(prepared.workspace.path).catch((err: unknown) => { init.logger.warn({ err }, 'collecting the workspace failed') })
  }
  return { stopReason: control.stopReason, exitCode, stats, diskFull, wallTimeMs }
}

async function workspaceFull (prepared: PreparedSandbox, logger: Logger): Promise<boolean> {
  try {
    return await isWorkspaceFull(prepared.workspace)
  } catch (err) {
    logger.warn({ err }, 'cannot measure the workspace')
    return false
  }
}

/** Agent stages: reads the result line; an agent that reports an error fails the stage. */
function addAgentResult (result: StageResult): void {
  const agent = parseAgentResult(result.stdout)
  if (agent === undefined) {
    if (result.outcome === 'succeeded') {
      result.outcome = 'failed'
      result.message = 'the agent exited without a result line; check that the image has the agent command and that the model API is reachable through --agent-egress'
    }
    return
  }
  result.agent = agent
  if (result.outcome === 'succeeded' && agent.isError) {
    result.outcome = 'failed'
    result.message = 'the agent reported an error in its result line; see the agent output'
  }
}

interface OutcomeFacts {
  stopReason?: StageOutcome
  exitCode: number | null
  outputExceeded: boolean
  oomKills: number
  diskFull: boolean
}

/** Decides the outcome. The first cause wins: a stop the node made, then the output cap, OOM, a full workspace, the exit code. */
export function decideOutcome (facts: OutcomeFacts): StageOutcome {
  if (facts.stopReason !== undefined) {
    return facts.stopReason
  }
  if (facts.outputExceeded) {
    return 'output_limit'
  }
  if (facts.oomKills > 0) {
    return 'out_of_memory'
  }
  if (facts.exitCode !== 0 && facts.diskFull) {
    return 'disk_limit'
  }
  return facts.exitCode === 0 ? 'succeeded' : 'failed'
}
