import { execFile } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import Docker from 'dockerode'
import { DEFAULT_AGENT_COMMAND, DEFAULT_AGENT_MODEL, DEFAULT_AGENT_TOOLS } from './agent.js'
import { BwrapDriver } from './bwrap/backend.js'
import { cgroupPathsNamed, createCgroup, removeCgroup, removeEmptyCgroupParent } from './cgroup.js'
import { DockerDriver } from './docker/backend.js'
import { detectDockerRuntime } from './docker/runtime.js'
import { EgressProxy } from './egress/proxy.js'
import { ImageAllowList } from './images.js'
import { SandboxExecutor } from './executor.js'
import { DEFAULT_LIMITS } from './spec.js'
import { WorkspaceManager } from './workspace.js'
import type { AgentSettings } from './agent.js'
import type { SandboxImage } from './images.js'
import type { SandboxBackendDriver } from './sandbox.js'
import type { SandboxInfo, StageLimits } from './types.js'
import type { Logger } from '../node/logger.js'

const run = promisify(execFile)

export type RuntimeSetting = 'auto' | 'runsc' | 'runc' | 'bwrap'

export interface ExecutorSettings {
  /** Id of this node, written on every container label and cgroup name. */
  nodeId: string
  /** Folder for workspaces and the egress proxy socket. */
  stateDir: string
  runtime: RuntimeSetting
  /** When `runsc`, the node shares nothing unless the sandbox is gVisor. */
  requireRuntime?: 'runsc'
  images: SandboxImage[]
  /** `host:port` pairs agents may reach through the egress proxy; empty means no egress. */
  agentEgress: string[]
  agent?: Partial<AgentSettings>
  /** Upper limits of every stage. */
  limits?: Partial<StageLimits>
  /** Prepared sandboxes kept waiting for jobs; 0 turns the warm pool off. */
  warmPoolSize?: number
  logger: Logger
  /** Docker client; one from DOCKER_HOST (or the default socket) when missing. */
  docker?: Docker
  collect?: (jobId: string, workspacePath: string) => Promise<void>
}

/** An executor, or none with the reason. */
export interface CreatedExecutor {
  executor?: SandboxExecutor
  info: SandboxInfo
}

/** Prepared sandboxes kept waiting for jobs: two, so a burst of two stages starts warm. */
export const DEFAULT_WARM_POOL_SIZE = 2

/** Time allowed for the Docker daemon to respond to a ping. */
const DOCKER_PING_TIMEOUT_MS = 3000

/**
 * Finds a usable sandbox and builds the executor for it: Docker when its
 * daemon responds (gVisor when proven), bubblewrap otherwise, or none with a
 * reason a person can act on. Leftovers of an earlier run of this node are
 * removed before the warm pool is filled.
 */
export async function createExecutor (settings: ExecutorSettings): Promise<CreatedExecutor> {
  const logger = settings.logger.child({ component: 'exec' })
  // The egress proxy's socket lives here; listening on a socket in a
  // missing folder fails with a misleading EACCES.
  await mkdir(settings.stateDir, { recursive: true, mode: 0o711 })
  const images = new ImageAllowList(settings.images)
  const limits = { ...DEFAULT_LIMITS, ...settings.limits }
  const workspaces = new WorkspaceManager(path.join(settings.stateDir, 'workspaces'), logger)
  const egress = settings.agentEgress.length > 0
    ? new EgressProxy(path.join(settings.stateDir, 'egress.sock'), settings.agentEgress, logger.child({ part: 'egress' }))
    : undefined

  const chosen = await chooseDriver(settings, images, limits, workspaces, egress, logger)
  if (chosen.driver === undefined) {
    logger.warn({ reason: chosen.info.reason }, 'no usable sandbox: this node shares nothing')
    return { info: chosen.info }
  }
  if (settings.requireRuntime === 'runsc' && chosen.info.runtime !== 'runsc') {
    await chosen.driver.close()
    const reason = `--require-runtime runsc: the sandbox found is ${chosen.info.backend} with ${chosen.info.runtime} (${chosen.info.reason ?? 'no gVisor'}); this node shares nothing until gVisor is installed`
    logger.warn({ reason }, 'required runtime missing: this node shares nothing')
    return { info: { backend: 'none', runtime: 'none', isolation: 'none', reason } }
  }

  const leftovers = await chosen.driver.removeLeftovers()
  if (leftovers.jobs.length > 0) {
    // The sandbox labels carry only job ids. The stage executor records each
    // running job's requester and reports the lost jobs to them (see
    // src/stage/lost-jobs.ts).
    logger.warn({ jobs: leftovers.jobs }, 'jobs of an earlier run were lost when the node stopped')
  }
  await egress?.start()
  const executor = new SandboxExecutor({
    driver: chosen.driver,
    images,
    logger,
    limits,
    agent: agentSettings(settings.agent),
    egress,
    collect: settings.collect,
    warmPoolSize: settings.warmPoolSize ?? DEFAULT_WARM_POOL_SIZE
  })
  await executor.warmUp()
  logger.info({ ...chosen.info }, 'sandbox ready')
  return { executor, info: chosen.info }
}

export function agentSettings (settings: Partial<AgentSettings> = {}): AgentSettings {
  return {
    command: settings.command ?? DEFAULT_AGENT_COMMAND,
    model: settings.model ?? DEFAULT_AGENT_MODEL,
    allowedTools: settings.allowedTools ?? DEFAULT_AGENT_TOOLS,
    apiKey: settings.apiKey,
    baseUrl: settings.baseUrl
  }
}

interface ChosenDriver {
  driver?: SandboxBackendDriver
  info: SandboxInfo
}

async function chooseDriver (settings: ExecutorSettings, images: ImageAllowList, limits: StageLimits, workspaces: WorkspaceManager, egress: EgressProxy | undefined, logger: Logger): Promise<ChosenDriver> {
  const reasons: string[] = []
  if (settings.runtime !== 'bwrap') {
    const docker = settings.docker ?? new Docker()
    const dockerProblem = await pingDocker(docker)
    if (dockerProblem === undefined) {
      const detected = await detectDockerRuntime(docker, settings.runtime, images.default.name, logger)
      const info: SandboxInfo = { backend: 'docker', runtime: detected.runtime, isolation: detected.isolation }
      if (detected.reason !== undefined) {
        info.reason = detected.reason
      }
      const driver = new DockerDriver({
        docker,
        nodeId: settings.nodeId,
        runtime: detected.runtime,
        info,
        workspaces,
        logger,
        proxySocket: egress?.socketPath
      })
      return { driver, info }
    }
    reasons.push(dockerProblem)
    if (settings.runtime !== 'auto') {
      return { info: noSandbox(`--runtime ${settings.runtime} needs Docker, but ${dockerProblem}`) }
    }
  }

  const bwrapProblem = await probeBwrap(images.default)
  if (bwrapProblem !== undefined) {
    reasons.push(bwrapProblem)
    return { info: noSandbox(reasons.join('; ')) }
  }
  const cgroups = await canWriteCgroups(settings.nodeId)
  const info: SandboxInfo = { backend: 'bwrap', runtime: 'bwrap', isolation: 'namespaces' }
  const notes = [...reasons, ...(cgroups ? [] : ['the node cannot create cgroups, so memory and process limits are rlimits and CPU is not capped'])]
  if (notes.length > 0) {
    info.reason = notes.join('; ')
  }
  const driver = new BwrapDriver({ nodeId: settings.nodeId, workspaces, logger, cgroups, proxySocket: egress?.socketPath, info })
  return { driver, info }
}

function noSandbox (reason: string): SandboxInfo {
  return { backend: 'none', runtime: 'none', isolation: 'none', reason: `${reason}. Start the Docker daemon (or set DOCKER_HOST), or install bubblewrap and pass --image NAME=ROOTFS_FOLDER` }
}

/** Returns undefined when the daemon responds, else the problem. */
async function pingDocker (docker: Docker): Promise<string | undefined> {
  try {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`no response within ${DOCKER_PING_TIMEOUT_MS} ms`)) }, DOCKER_PING_TIMEOUT_MS)
    })
    try {
      await Promise.race([docker.ping(), timeout])
    } finally {
      clearTimeout(timer)
    }
    return undefined
  } catch (err) {
    return `no Docker daemon responds at ${process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock'} (${(err as Error).message})`
  }
}

/** Returns undefined when bubblewrap runs `true` in the default image's root, else the problem. */
async function probeBwrap (image: SandboxImage): Promise<string | undefined> {
  if (image.rootfs === undefined) {
    return `bubblewrap needs a root file system folder for image ${image.name}; pass --image ${image.name}=/path/to/rootfs`
  }
  try {
    await run('bwrap', ['--unshare-all', '--die-with-parent', '--ro-bind', image.rootfs, '/', '--proc', '/proc', '--dev', '/dev', '/bin/true'], { timeout: 10_000 })
    return undefined
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') {
      return 'bubblewrap is not installed (apt-get install bubblewrap)'
    }
    return `bubblewrap cannot run /bin/true in ${image.rootfs}: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`
  }
}

async function canWriteCgroups (nodeId: string): Promise<boolean> {
  const probe = cgroupPathsNamed(`emdx-node/${nodeId}`, 'probe')
  try {
    await createCgroup(probe, { memoryBytes: 64 * 1024 ** 2, cpus: 1, pids: 16 })
    await removeCgroup(probe)
    return true
  } catch {
    await removeCgroup(probe).catch(() => {})
    return false
  } finally {
    await removeEmptyCgroupParent(`emdx-node/${nodeId}`)
  }
}
