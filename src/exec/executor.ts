import { agentCommand, agentEnvironment, parseAgentResult } from './agent.js'
import { extractArchive, DEFAULT_ARCHIVE_LIMITS } from './archive.js'
import { proxyEnvironment } from './egress/relay.js'
import { SandboxUnavailableError, StageSpecError } from './errors.js'
import { describeOutcome } from './outcome.js'
import { CappedOutput, LineSplitter } from './output.js'
import { ProgressChannel } from './progress.js'
import { isWorkspaceFull } from './workspace.js'
import { DEFAULT_LIMITS, stageEnvironment, validateSpec } from './spec.js'
import type { AgentSettings } from './agent.js'
import type { CgroupStats } from './cgroup.js'
import type { EgressProxy } from './egress/proxy.js'
import type { ImageAllowList } from './images.js'
import type { LaunchedSandbox, PreparedSandbox, SandboxBackendDriver } from './sandbox.js'
import type { LeftoverReport, SandboxInfo, StageExecutor, StageLimits, StageOutcome, StageResult, StageRun, StageSpec } from './types.js'
import type { Logger } from '../node/logger.js'

/** How often a workspace without a kernel size cap is measured, in milliseconds. */
const WORKSPACE_POLL_MS = 500

export interface SandboxExecutorInit {
  driver: SandboxBackendDriver
  images: ImageAllowList
  logger: Logger
  /** Upper limits of every stage; a stage may ask for less. */
  limits?: Partial<StageLimits>
  agent: AgentSettings
  /** The node's egress proxy; agent stages get no network without it. */
  egress?: EgressProxy
  /**
   * Called after the sandbox is gone and before its workspace is deleted,
   * for collecting results (see `collectWorkspaceFiles`).
   */
  collect?: (jobId: string, workspacePath: string) => Promise<void>
}

interface RunState {
  stopReason?: StageOutcome
  sandbox?: LaunchedSandbox
}

/**
 * Runs stages in the sandbox of one backend and reports every run the same
 * way: one outcome, capped stdout, metrics measured by the node.
 */
export class SandboxExecutor implements StageExecutor {
  readonly info: SandboxInfo
  private readonly driver: SandboxBackendDriver
  private readonly images: ImageAllowList
  private readonly logger: Logger
  private readonly limits: StageLimits
  private readonly agent: AgentSettings
  private readonly egress?: EgressProxy
  private readonly collect?: (jobId: string, workspacePath: string) => Promise<void>
  private readonly running = new Map<string, { cancel: AbortController, result: Promise<StageResult> }>()
  private closed = false

  constructor (init: SandboxExecutorInit) {
    this.driver = init.driver
    this.info = init.driver.info
    this.images = init.images
    this.logger = init.logger
    this.limits = { ...DEFAULT_LIMITS, ...init.limits }
    this.agent = init.agent
    this.egress = init.egress
    this.collect = init.collect
  }

  async start (spec: StageSpec): Promise<StageRun> {
    if (this.closed) {
      throw new SandboxUnavailableError(`job ${spec.jobId}: the executor is closed`)
    }
    const limits = validateSpec(spec, this.limits)
    const image = this.images.resolve(spec.image, spec.jobId)
    if (this.running.has(spec.jobId)) {
      throw new StageSpecError(`job ${spec.jobId} is already running`)
    }

    const cancel = new AbortController()
    const signal = spec.signal === undefined ? cancel.signal : AbortSignal.any([cancel.signal, spec.signal])
    const progress = new ProgressChannel(spec.jobId)
    progress.state('preparing')
    const prepared = await this.driver.prepare({ jobId: spec.jobId, image, limits, signal })
    try {
      if (spec.input !== undefined) {
        const archiveLimits = { ...DEFAULT_ARCHIVE_LIMITS, maxTotalBytes: Math.min(DEFAULT_ARCHIVE_LIMITS.maxTotalBytes, limits.workspaceBytes) }
        await extractArchive(spec.input.archivePath, prepared.workspace.path, prepared.workspace.owner, archiveLimits)
      }
    } catch (err) {
      this.logger.warn({ err, job: spec.jobId }, 'stage input rejected')
      await prepared.discard()
      progress.close()
      throw err
    }

    const result = this.execute(spec, limits, prepared, progress, signal)
    this.running.set(spec.jobId, { cancel, result })
    void result.finally(() => { this.running.delete(spec.jobId) })
    return { jobId: spec.jobId, progress, result }
  }

  async run (spec: StageSpec): Promise<StageResult> {
    const run = await this.start(spec)
    return await run.result
  }

  async removeLeftovers (signal?: AbortSignal): Promise<LeftoverReport> {
    return await this.driver.removeLeftovers(signal)
  }

  async close (): Promise<void> {
    this.closed = true
    const runs = [...this.running.values()]
    for (const run of runs) {
      run.cancel.abort()
    }
    await Promise.allSettled(runs.map(async run => await run.result))
    await this.driver.close()
    await this.egress?.stop()
  }

  private async execute (spec: StageSpec, limits: StageLimits, prepared: PreparedSandbox, progress: ProgressChannel, signal: AbortSignal): Promise<StageResult> {
    const logger = this.logger.child({ job: spec.jobId })
    const state: RunState = {}
    const stop = (reason: StageOutcome): void => {
      if (state.stopReason !== undefined) {
        return
      }
      state.stopReason = reason
      logger.info({ reason }, 'stopping stage')
      void state.sandbox?.kill().catch((err: unknown) => { logger.warn({ err }, 'cannot kill sandbox') })
    }

    const stdout = new CappedOutput(limits.outputBytes, () => { stop('output_limit') })
    const stdoutLines = new LineSplitter(line => { progress.log('stdout', line) })
    const stderrLines = new LineSplitter(line => { progress.log('stderr', line) })
    const onAbort = (): void => { stop('cancelled') }
    signal.addEventListener('abort', onAbort, { once: true })
    const startedAt = performance.now()
    const deadline = setTimeout(() => { stop('timed_out') }, limits.timeoutMs)
    const diskWatch = prepared.workspace.capped ? undefined : setInterval(() => { void this.checkDisk(prepared, stop) }, WORKSPACE_POLL_MS)

    let exitCode: number | null = null
    let stats: CgroupStats = { cpuSeconds: 0, peakMemoryBytes: 0, oomKills: 0 }
    let diskFull = false
    try {
      if (signal.aborted) {
        stop('cancelled')
      } else {
        state.sandbox = await prepared.launch({
          command: this.commandOf(spec),
          env: this.environmentOf(spec),
          egress: spec.agent !== undefined && this.egress?.enabled === true,
          onStdout: (chunk) => { stdout.write(chunk); stdoutLines.write(chunk) },
          onStderr: (chunk) => { stderrLines.write(chunk) }
        })
        logger.info({ image: spec.image ?? this.images.default.name }, 'stage running')
        progress.state('running')
        if (state.stopReason !== undefined) {
          await state.sandbox.kill()
        }
        exitCode = await state.sandbox.exited
        progress.state('finishing')
        stats = await state.sandbox.stats()
        await state.sandbox.kill()
      }
    } finally {
      clearTimeout(deadline)
      clearInterval(diskWatch)
      signal.removeEventListener('abort', onAbort)
      diskFull = await this.isWorkspaceFull(prepared)
      await this.collectAndDiscard(spec.jobId, prepared, logger)
      stdoutLines.end()
      stderrLines.end()
    }

    const wallTimeMs = performance.now() - startedAt
    const outcome = decideOutcome({ stopReason: state.stopReason, exitCode, outputExceeded: stdout.exceeded, oomKills: stats.oomKills, diskFull })
    const text = stdout.text()
    const result: StageResult = {
      jobId: spec.jobId,
      outcome,
      exitCode: state.stopReason === undefined || state.stopReason === 'output_limit' ? exitCode : null,
      stdout: text,
      stdoutBytes: stdout.totalBytes,
      stdoutTruncated: stdout.exceeded,
      message: describeOutcome(outcome, exitCode, limits),
      metrics: { cpuSeconds: stats.cpuSeconds, wallTimeMs, peakMemoryBytes: stats.peakMemoryBytes },
      backend: this.info.backend,
      runtime: this.info.runtime
    }
    this.addAgentResult(spec, result)
    logger.info({ outcome, exitCode: result.exitCode, wallTimeMs: Math.round(wallTimeMs), cpuSeconds: stats.cpuSeconds }, 'stage finished')
    progress.state('finished')
    progress.close()
    return result
  }

  private commandOf (spec: StageSpec): string[] {
    if (spec.agent !== undefined) {
      return agentCommand(this.agent, spec.agent)
    }
    return spec.command ?? []
  }

  private environmentOf (spec: StageSpec): Record<string, string> {
    if (spec.agent === undefined) {
      return stageEnvironment(spec, {})
    }
    const proxy = this.egress?.enabled === true ? proxyEnvironment() : {}
    return stageEnvironment(spec, { ...agentEnvironment(this.agent), ...proxy })
  }

  /** Agent stages: reads the result line; an agent that reports an error fails the stage. */
  private addAgentResult (spec: StageSpec, result: StageResult): void {
    if (spec.agent === undefined) {
      return
    }
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

  private async checkDisk (prepared: PreparedSandbox, stop: (reason: StageOutcome) => void): Promise<void> {
    if (await this.isWorkspaceFull(prepared)) {
      stop('disk_limit')
    }
  }

  private async isWorkspaceFull (prepared: PreparedSandbox): Promise<boolean> {
    try {
      return await isWorkspaceFull(prepared.workspace)
    } catch (err) {
      this.logger.warn({ err, job: prepared.workspace.jobId }, 'cannot measure the workspace')
      return false
    }
  }

  private async collectAndDiscard (jobId: string, prepared: PreparedSandbox, logger: Logger): Promise<void> {
    try {
      await this.collect?.(jobId, prepared.workspace.path)
    } catch (err) {
      logger.warn({ err }, 'collecting the workspace failed')
    }
    try {
      await prepared.discard()
    } catch (err) {
      logger.warn({ err }, 'cleaning up the sandbox failed')
    }
  }
}

interface OutcomeFacts {
  stopReason?: StageOutcome
  exitCode: number | null
  outputExceeded: boolean
  oomKills: number
  diskFull: boolean
}

/** The first cause wins: a stop the node made, then the output cap, OOM, a full workspace, the exit code. */
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
