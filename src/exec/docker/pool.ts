import { randomBytes } from 'node:crypto'
import type { SandboxImage } from '../images.js'
import type { StageLimits } from '../types.js'
import type { StartedContainer } from './container.js'
import type { Logger } from '../../node/logger.js'

/** Starts one container of the pool's image and limits. */
export type ContainerStarter = (slot: string) => Promise<StartedContainer>

export interface WarmPoolInit {
  size: number
  image: SandboxImage
  limits: StageLimits
  start: ContainerStarter
  logger: Logger
}

/** Pause after a failed refill, so a broken daemon is not asked again in a tight loop. */
const REFILL_BACKOFF_MS = 2000

/**
 * Started containers of the default image and limits, each waiting for its
 * one job. Taking one moves container creation and start off the stage's
 * critical path; the pool then starts a replacement in the background. A
 * container leaves the pool once and is removed after its job.
 */
export class WarmPool {
  private readonly init: WarmPoolInit
  private readonly ready: StartedContainer[] = []
  private starting = 0
  private closed = false

  constructor (init: WarmPoolInit) {
    this.init = init
  }

  get size (): number {
    return this.ready.length
  }

  /** Fills the pool and resolves once every slot is ready (or failed). */
  async fill (): Promise<void> {
    const missing = this.init.size - this.ready.length - this.starting
    await Promise.all(Array.from({ length: Math.max(0, missing) }, async () => { await this.startOne() }))
  }

  /** A warm container for this image and these limits, or undefined when none fits. */
  take (image: SandboxImage, limits: StageLimits): StartedContainer | undefined {
    if (image.name !== this.init.image.name || !sameLimits(limits, this.init.limits)) {
      return undefined
    }
    const container = this.ready.shift()
    if (container !== undefined) {
      void this.fill()
    }
    return container
  }

  async close (): Promise<void> {
    this.closed = true
    const containers = this.ready.splice(0)
    await Promise.allSettled(containers.map(async container => { await container.discard() }))
  }

  private async startOne (): Promise<void> {
    this.starting++
    try {
      const container = await this.init.start(`warm-${randomBytes(6).toString('hex')}`)
      if (this.closed) {
        await container.discard()
        return
      }
      this.ready.push(container)
    } catch (err) {
      this.init.logger.warn({ err }, 'cannot start a warm container; retrying later')
      await new Promise(resolve => setTimeout(resolve, REFILL_BACKOFF_MS))
    } finally {
      this.starting--
    }
  }
}

function sameLimits (a: StageLimits, b: StageLimits): boolean {
  return (Object.keys(a) as Array<keyof StageLimits>).every(key => key === 'timeoutMs' || key === 'outputBytes' || a[key] === b[key])
}
