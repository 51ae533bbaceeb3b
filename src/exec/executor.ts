import { agentCommand, agentEnvironment } from './agent.js'
import { extractArchive, DEFAULT_ARCHIVE_LIMITS } from './archive.js'
import { proxyEnvironment } from './egress/relay.js'
import { SandboxUnavailableError, StageSpecError } from './errors.js'
import { WarmPool } from './pool.js'
import { ProgressChannel } from './progress.js'
import { DEFAULT_LIMITS, stageEnvironment, validateSpec } from './spec.js'
import { executeStage } from './stage-run.js'
import type { AgentSettings } from './agent.js'
import type { EgressProxy, EgressStats } from './egress/proxy.js'
import type { ImageAllowList, SandboxImage } from './images.js'
import type { PreparedSandbox, SandboxBackendDriver } from './sandbox.js'
import type { LeftoverReport, SandboxInfo, StageExecutor, StageLimits, StageResult, StageRun, StageSpec } from './types.js'
import type { Logger } from '../node/logger.js'

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
   * Called once every process of a run is dead and before its workspace is
   * deleted, for collecting results (see `collectWorkspaceFiles`).
   */
  collect?: (jobId: string, workspacePath: string) => Promise<void>
  /** Prepared sandboxes of the default image and limits kept waiting for jobs; 0 turns the pool off. */
  warmPoolSize?: number
}

/** Maximum time a finished sandbox waits for `StageSpec.cleanupAfter` before it is removed. */
export const HOUSEKEEPING_WAIT_MS = 5_000

interface ActiveRun {
  cancel: AbortController
  done: Promise<void>
}

/**
 * Runs stages in the sandbox of one backend and reports every run the same
 * way: one outcome, capped stdout, metrics measured by the node. A run's
 * result is returned once its processes are dead and its workspace is
 * collected. Removing the sandbox and workspace finishes after that
 * (`StageRun.cleanedUp`), and `close` waits for it.
 */
export class SandboxExecutor implements StageExecutor {
  readonly info: SandboxInfo
  private readonly init: SandboxExecutorInit
  private readonly driver: SandboxBackendDriver
  private readonly limits: StageLimits
  private readonly logger: Logger
  private readonly pool?: WarmPool
  private readonly active = new Map<string, ActiveRun>()
  private closed = false
  /** Signal that `close` aborts, which ends the waits for `cleanupAfter`. */
  private readonly closing = new AbortController()

  constructor (init: SandboxExecutorInit) {
    this.init = init
    this.driver = init.driver
    this.info = init.driver.info
    this.logger = init.logger
    this.limits = { ...DEFAULT_LIMITS, ...init.limits }
    if ((init.warmPoolSize ?? 0) > 0) {
      const image = init.images.default
      this.pool = new WarmPool({
        size: init.warmPoolSize ?? 0,
        image,
        limits: this.limits,
        prepare: async (slot) => await this.driver.prepare({ jobId: slot, image, limits: this.limits }),
        logger: init.logger.child({ part: 'warm-pool' })
      })
    }
  }

  async start (spec: StageSpec): Promise<StageRun> {
    if (this.closed) {
      throw new SandboxUnavailableError(`job ${spec.jobId}: the executor is closed`)
    }
    const limits = validateSpec(spec, this.limits)
    const image = this.init.images.resolve(spec.image, spec.jobId)
    if (this.active.has(spec.jobId)) {
      throw new StageSpecError(`job ${spec.jobId} is already running`)
    }

    const cancel = new AbortController()
    const signal = spec.signal === undefined ? cancel.signal : AbortSignal.any([cancel.signal, spec.signal])
    const progress = new ProgressChannel(spec.jobId)
    progress.state('preparing')
    const prepared = await this.prepare(spec, image, limits)

    const result = executeStage({
      jobId: spec.jobId,
      limits,
      command: this.commandOf(spec),
      env: this.environmentOf(spec),
      egress: spec.agent !== undefined && this.init.egress?.enabled === true,
      isAgent: spec.agent !== undefined,
      prepared,
      progress,
      signal,
      info: this.info,
      logger: this.logger.child({ job: spec.jobId }),
      collect: this.init.collect === undefined ? undefined : async (folder) => { await this.init.collect?.(spec.jobId, folder) }
    })
    const cleanedUp = this.finish(spec, result, prepared, progress)
    this.active.set(spec.jobId, { cancel, done: cleanedUp })
    return { jobId: spec.jobId, progress, result, cleanedUp }
  }

  async run (spec: StageSpec): Promise<StageResult> {
    const run = await this.start(spec)
    return await run.result
  }

  /** Connections the egress proxy forwarded and rejected since the start; undefined without egress. */
  egressStats (): EgressStats | undefined {
    return this.init.egress === undefined ? undefined : { ...this.init.egress.stats }
  }

  /** Waits until the warm pool is full; resolves at once without a pool. */
  async warmUp (): Promise<void> {
    await this.pool?.fill()
  }

  async removeLeftovers (signal?: AbortSignal): Promise<LeftoverReport> {
    return await this.driver.removeLeftovers(signal)
  }

  async close (): Promise<void> {
    this.closed = true
    this.closing.abort()
    const runs = [...this.active.values()]
    for (const run of runs) {
      run.cancel.abort()
    }
    await Promise.allSettled(runs.map(async run => { await run.done }))
    await this.pool?.close()
    await this.driver.close()
    await this.init.egress?.stop()
  }

  /** A warm sandbox with its memory and CPU lowered to the job's, or undefined when none fits or lowering fails. */
  private async warmSandbox (image: SandboxImage, limits: StageLimits): Promise<PreparedSandbox | undefined> {
    const warm = this.pool?.take(image, limits)
    if (warm === undefined || this.pool === undefined) {
      return undefined
    }
    const pooled = this.pool.limits
    if (limits.memoryBytes === pooled.memoryBytes && limits.cpus === pooled.cpus) {
      return warm
    }
    if (warm.tighten !== undefined && await warm.tighten({ cpus: limits.cpus, memoryBytes: limits.memoryBytes })) {
      return warm
    }
    await warm.discard()
    return undefined
  }

  /** A warm sandbox when one fits, else a new one; the input archive is checked and extracted into it. */
  private async prepare (spec: StageSpec, image: SandboxImage, limits: StageLimits): Promise<PreparedSandbox> {
    const prepared = await this.warmSandbox(image, limits) ?? await this.driver.prepare({ jobId: spec.jobId, image, limits, signal: spec.signal })
    if (spec.input === undefined) {
      return prepared
    }
    try {
      const archiveLimits = { ...DEFAULT_ARCHIVE_LIMITS, maxTotalBytes: Math.min(DEFAULT_ARCHIVE_LIMITS.maxTotalBytes, limits.workspaceBytes) }
      await extractArchive(spec.input.archivePath, prepared.workspace.path, prepared.workspace.owner, archiveLimits)
      return prepared
    } catch (err) {
      this.logger.warn({ err, job: spec.jobId }, 'stage input rejected')
      await prepared.discard()
      throw err
    }
  }

  /** Logs the result, ends the progress stream, then removes the sandbox once the caller is done with the result. */
  private async finish (spec: StageSpec, result: Promise<StageResult>, prepared: PreparedSandbox, progress: ProgressChannel): Promise<void> {
    const jobId = spec.jobId
    const logger = this.logger.child({ job: jobId })
    try {
      const { outcome, exitCode, metrics } = await result
      logger.info({ outcome, exitCode, wallTimeMs: Math.round(metrics.wallTimeMs), cpuSeconds: metrics.cpuSeconds }, 'stage finished')
    } catch (err) {
      logger.error({ err }, 'stage run failed')
    }
    progress.state('finished')
    progress.close()
    if (spec.cleanupAfter !== undefined) {
      await waitAtMost(spec.cleanupAfter, HOUSEKEEPING_WAIT_MS, this.closing.signal)
    }
    if (!this.closed) {
      void this.pool?.fill()
    }
    try {
      await prepared.discard()
    } catch (err) {
      logger.warn({ err }, 'cleaning up the sandbox failed')
    } finally {
      this.active.delete(jobId)
    }
  }

  private commandOf (spec: StageSpec): string[] {
    if (spec.agent !== undefined) {
      return agentCommand(this.init.agent, spec.agent)
    }
    return spec.command ?? []
  }

  private environmentOf (spec: StageSpec): Record<string, string> {
    if (spec.agent === undefined) {
      return stageEnvironment(spec, {})
    }
    const proxy = this.init.egress?.enabled === true ? proxyEnvironment() : {}
    return stageEnvironment(spec, { ...agentEnvironment(this.init.agent), ...proxy })
  }
}

/** Waits until `promise` settles, `ms` pass or `signal` aborts, whichever comes first. */
async function waitAtMost (promise: Promise<unknown>, ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) {
    return
  }
  let timer: NodeJS.Timeout | undefined
  let onAbort: (() => void) | undefined
  const stop = new Promise<void>(resolve => {
    timer = setTimeout(resolve, ms)
    onAbort = resolve
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    await Promise.race([promise.then(() => {}, () => {}), stop])
  } finally {
    clearTimeout(timer)
    if (onAbort !== undefined) {
      signal.removeEventListener('abort', onAbort)
    }
  }
}
