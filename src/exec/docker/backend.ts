import { SandboxError } from '../errors.js'
import { dockerCallSignal, removeQuietly, startContainer } from './container.js'
import { containerUser, LABEL_JOB, LABEL_NODE } from './profile.js'
import { jobsOf } from '../workspace.js'
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
}

/**
 * The Docker backend: hardened containers through dockerode. `prepare`
 * starts a container whose launcher waits for its job, so the executor's
 * warm pool can hold started containers.
 */
export class DockerDriver implements SandboxBackendDriver {
  readonly info: SandboxInfo
  private readonly init: DockerDriverInit

  constructor (init: DockerDriverInit) {
    this.init = init
    this.info = init.info
  }

  async prepare (request: PrepareRequest): Promise<PreparedSandbox> {
    return await this.startContainer(request.jobId, request.image, request.limits, request.signal)
  }

  private async startContainer (jobId: string, image: SandboxImage, limits: StageLimits, signal?: AbortSignal): Promise<StartedContainer> {
    const { init } = this
    const user = containerUser()
    const workspace = await init.workspaces.create(jobId, limits.workspaceBytes, user)
    try {
      return await startContainer({
        docker: init.docker,
        profile: { image: image.name, runtime: init.runtime, nodeId: init.nodeId, jobId, workspace: workspace.path, limits, user },
        workspace,
        workspaces: init.workspaces,
        proxySocket: init.proxySocket,
        logger: init.logger.child({ job: jobId }),
        signal
      })
    } catch (err) {
      await init.workspaces.remove(workspace)
      throw new SandboxError(`cannot start a container of image ${image.name} for job ${jobId}: ${(err as Error).message}`, { cause: err })
    }
  }

  async removeLeftovers (signal?: AbortSignal): Promise<LeftoverReport> {
    const { docker, nodeId, logger } = this.init
    const containers = await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${nodeId}`] }, abortSignal: dockerCallSignal(signal) })
    for (const info of containers) {
      await removeQuietly(docker.getContainer(info.Id), logger)
    }
    const removed = await this.init.workspaces.removeAll()
    const jobs = jobsOf([...removed, ...containers.map(info => info.Labels[LABEL_JOB] ?? '')])
    if (containers.length > 0 || removed.length > 0) {
      logger.info({ containers: containers.length, workspaces: removed.length, jobs }, 'removed leftovers of an earlier run')
    }
    return { containers: containers.length, workspaces: removed.length, processes: 0, jobs }
  }

  async close (): Promise<void> {}
}
