import { randomBytes } from 'node:crypto'
import { WARM_SLOT_PREFIX } from './workspace.js'
import type { SandboxImage } from './images.js'
import type { PreparedSandbox } from './sandbox.js'
import type { StageLimits } from './types.js'
import type { Logger } from '../node/logger.js'

/** Prepares one sandbox of the pool's image and limits; `slot` names it until a job takes it. */
export type SandboxPreparer = (slot: string) => Promise<PreparedSandbox>

export interface WarmPoolInit {
  size: number
  image: SandboxImage
  limits: StageLimits
  prepare: SandboxPreparer
  logger: Logger
}

/** Pause after a failed refill, so a broken daemon is not asked again in a tight loop. */
const REFILL_BACKOFF_MS = 2000

/**
 * Prepared sandboxes of the default image and limits, each waiting for its
 * one job: for Docker a started container, for bubblewrap a mounted
 * workspace and a cgroup. Taking one moves that work off the stage's
 * critical path. A sandbox leaves the pool once and is removed after its job.
 */
export class WarmPool {
  private readonly init: WarmPoolInit
  private readonly ready: PreparedSandbox[] = []
  private readonly starting = new Set<Promise<void>>()
  private closed = false

  constructor (init: WarmPoolInit) {
    this.init = init
  }

  get size (): number {
    return this.ready.length
  }

  /** Fills the pool and resolves once every slot is ready (or failed), including ones already being prepared. */
  async fill (): Promise<void> {
    const missing = this.init.size - this.ready.length - this.starting.size
    for (let index = 0; index < missing; index++) {
      const starting = this.startOne()
      this.starting.add(starting)
      void starting.finally(() => { this.starting.delete(starting) })
    }
    await Promise.all([...this.starting])
  }

  /**
   * Returns a warm sandbox for this image that can serve these limits, or
   * undefined when none fits. Warm sandboxes have the executor's largest
   * memory and CPU limits. A job that needs less gets one whose limits the
   * caller lowers with `tighten` before the job starts. The caller refills the
   * pool (`fill`) once its run has finished, so that preparing the
   * replacement does not compete with the run for CPU.
   */
  take (image: SandboxImage, limits: StageLimits): PreparedSandbox | undefined {
    if (image.name !== this.init.image.name || !fits(limits, this.init.limits)) {
      return undefined
    }
    return this.ready.shift()
  }

  /** The memory and CPU limits of the pool's sandboxes. */
  get limits (): StageLimits {
    return this.init.limits
  }

  async close (): Promise<void> {
    this.closed = true
    await Promise.allSettled([...this.starting])
    const sandboxes = this.ready.splice(0)
    await Promise.allSettled(sandboxes.map(async sandbox => { await sandbox.discard() }))
  }

  private async startOne (): Promise<void> {
    try {
      const sandbox = await this.init.prepare(`${WARM_SLOT_PREFIX}${randomBytes(6).toString('hex')}`)
      if (this.closed) {
        await sandbox.discard()
        return
      }
      this.ready.push(sandbox)
    } catch (err) {
      this.init.logger.warn({ err }, 'cannot prepare a warm sandbox; retrying on the next take')
      await new Promise(resolve => setTimeout(resolve, REFILL_BACKOFF_MS))
    }
  }
}

/**
 * Returns true when a sandbox prepared with `prepared` can serve a job with
 * `requested`. Memory and CPUs may be lower, because they are lowered before
 * the job starts. The timeout and output cap may differ, because the node
 * enforces them. Every other limit must be the same.
 */
function fits (requested: StageLimits, prepared: StageLimits): boolean {
  return (Object.keys(requested) as Array<keyof StageLimits>).every(key => {
    if (key === 'timeoutMs' || key === 'outputBytes') {
      return true
    }
    if (key === 'memoryBytes' || key === 'cpus') {
      return requested[key] <= prepared[key]
    }
    return requested[key] === prepared[key]
  })
}
