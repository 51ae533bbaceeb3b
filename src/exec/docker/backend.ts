import { SandboxError } from '../errors.js'
import { SANDBOX_GID, SANDBOX_UID } from '../spec.js'
import { removeQuietly, startContainer } from './container.js'
import { LABEL_NODE } from './profile.js'
import { WarmPool } from './pool.js'
import type { SandboxImage } from '../images.js'
import type { PreparedSandbox, PrepareRequest, SandboxBackendDriver } from '../sandbox.js'
import type { LeftoverReport, SandboxInfo, StageLimits } from '../types.js'
import type { WorkspaceManager } from '../workspace.js'
import type { StartedContainer } from './container.js'
import type { Logger } from '../../node/logger.js'
import type Docker from 'dockerode'

export interface DockerDriverInit {
  docker: Docker
  nodeId: string
  runtime: 'runsc' | 'runc'
  info: SandboxInfo
  workspaces: WorkspaceManager
  logger: Logger
  proxySocket?: string
  /** Warm containers kept started for the default image and limits; 0 turns the pool off. */
  warmPoolSize: number
  defaultImage: SandboxImage
  defaultLimits: StageLimits
}

/** The Docker backend: hardened containers through dockerode, with a warm pool. */
export class DockerDriver implements SandboxBackendDriver {
  readonly info: SandboxInfo
  private readonly init: DockerDriverInit
  private readonly pool?: WarmPool

  constructor (init: DockerDriverInit) {
    this.init = init
    this.info = init.info
    if (init.warmPoolSize > 0) {
      this.pool = new WarmPool({
        size: init.warmPoolSize,
        image: init.defaultImage,
        limits: init.defaultLimits,
        start: async (slot) => await this.startContainer(slot, init.defaultImage, init.defaultLimits),
        logger: init.logger.child({ pool: 'warm' })
      })
    }
  }

  /** Fills the warm pool; resolves when its containers are started. */
  async warmUp (): Promise<void> {
    await this.pool?.fill()
  }

  get warmContainers (): number {
    return this.pool?.size ?? 0
  }

  async prepare (request: PrepareRequest): Promise<PreparedSandbox> {
    const warm = this.pool?.take(request.image, request.limits)
    if (warm !== undefined) {
      this.init.logger.debug({ job: request.jobId, container: warm.id }, 'stage takes a warm container')
      return warm
    }
    return await this.startContainer(request.jobId, request.image, request.limits)
  }

  private async startContainer (jobId: string, image: SandboxImage, limits: StageLimits): Promise<StartedContainer> {
    const { init } = this
    // Without user namespace remapping, the container's uid is the host's.
    const workspace = await init.workspaces.create(jobId, limits.workspaceBytes, { uid: SANDBOX_UID, gid: SANDBOX_GID })
    try {
      return await startContainer({
        docker: init.docker,
        profile: { image: image.name, runtime: init.runtime, nodeId: init.nodeId, jobId, workspace: workspace.path, limits },
        workspace,
        workspaces: init.workspaces,
        proxySocket: init.proxySocket,
        logger: init.logger.child({ job: jobId })
      })
    } catch (err) {
      await init.workspaces.remove(workspace)
      throw new SandboxError(`cannot start a container of image ${image.name} for job ${jobId}: ${(err as Error).message}`, { cause: err })
    }
  }

  async removeLeftovers (): Promise<LeftoverReport> {
    const { docker, nodeId, logger } = this.init
    const containers = await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${nodeId}`] } })
    for (const info of containers) {
      await removeQuietly(docker.getContainer(info.Id), logger)
    }
    const workspaces = await this.init.workspaces.removeAll()
    if (containers.length > 0 || workspaces > 0) {
      logger.info({ containers: containers.length, workspaces }, 'removed leftovers of an earlier run')
    }
    return { containers: containers.length, workspaces, processes: 0 }
  }

  async close (): Promise<void> {
    await this.pool?.close()
  }
}
