import { Writable } from 'node:stream'
import { cgroupPathsOfProcess, killCgroupProcesses, readCgroupStats } from '../cgroup.js'
import { startRelay } from '../egress/relay.js'
import { SandboxError } from '../errors.js'
import { ExitLineFilter, jobScript } from '../launcher.js'
import { containerProfile } from './profile.js'
import type { CgroupPaths, CgroupStats } from '../cgroup.js'
import type { LaunchedSandbox, LaunchRequest, PreparedSandbox } from '../sandbox.js'
import type { Workspace, WorkspaceManager } from '../workspace.js'
import type { ProfileInit } from './profile.js'
import type { Logger } from '../../node/logger.js'
import type Docker from 'dockerode'
import type { Duplex } from 'node:stream'

/** Time allowed for the attach stream to deliver the last output after the container is killed. */
const DRAIN_TIMEOUT_MS = 2000

/** Time allowed for one call to the Docker daemon (create, start, kill, remove). */
export const DOCKER_CALL_TIMEOUT_MS = 30_000

/** An abort signal for one daemon call: the caller's, and the call's own timeout. */
export function dockerCallSignal (signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS)
  return signal === undefined ? timeout : AbortSignal.any([signal, timeout])
}

export interface StartContainerInit {
  docker: Docker
  profile: ProfileInit
  workspace: Workspace
  workspaces: WorkspaceManager
  proxySocket?: string
  logger: Logger
  signal?: AbortSignal
}

/**
 * Creates, attaches and starts a hardened container whose launcher waits for
 * its job on stdin. Used for a cold start and to fill the warm pool.
 */
export async function startContainer (init: StartContainerInit): Promise<StartedContainer> {
  const container = await init.docker.createContainer({ ...containerProfile(init.profile), abortSignal: dockerCallSignal(init.signal) })
  try {
    const stream = await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true, abortSignal: dockerCallSignal(init.signal) }) as Duplex
    await container.start({ abortSignal: dockerCallSignal(init.signal) })
    const waited = container.wait({ condition: 'next-exit' }) as Promise<{ StatusCode: number }>
    const details = await container.inspect({ abortSignal: dockerCallSignal(init.signal) })
    const cgroup = await cgroupPathsOfProcess(details.State.Pid)
    return new StartedContainer({ ...init, container, stream, waited, pid: details.State.Pid, cgroup })
  } catch (err) {
    await removeQuietly(container)
    throw err
  }
}

interface StartedContainerInit extends StartContainerInit {
  container: Docker.Container
  stream: Duplex
  waited: Promise<{ StatusCode: number }>
  pid: number
  cgroup: CgroupPaths
}

/** A running container waiting for its one job; never given a second one. */
export class StartedContainer implements PreparedSandbox {
  readonly workspace: Workspace
  readonly id: string
  private readonly init: StartedContainerInit
  private readonly streamEnded: Promise<void>
  private stopRelay?: () => void
  private lastStats?: CgroupStats
  private launched = false
  private discarded?: Promise<void>

  constructor (init: StartedContainerInit) {
    this.init = init
    this.workspace = init.workspace
    this.id = init.container.id
    this.streamEnded = new Promise(resolve => {
      init.stream.once('end', resolve)
      init.stream.once('close', resolve)
      init.stream.once('error', resolve)
    })
    // Nothing is printed until a job arrives, and a crash shows through `waited`.
    init.waited.catch(() => {})
  }

  /** Lowers the running container's memory (swap included) and CPU quota through the daemon. */
  async tighten (limits: { cpus: number, memoryBytes: number }): Promise<boolean> {
    try {
      await this.init.container.update({ Memory: limits.memoryBytes, MemorySwap: limits.memoryBytes, NanoCpus: Math.round(limits.cpus * 1e9), abortSignal: dockerCallSignal() })
      return true
    } catch (err) {
      this.init.logger.warn({ err }, 'cannot lower the limits of a warm container')
      return false
    }
  }

  async launch (request: LaunchRequest): Promise<LaunchedSandbox> {
    if (this.launched) {
      throw new SandboxError(`container ${this.id} already ran a job; containers are never reused`)
    }
    this.launched = true
    const { init } = this
    const job = jobScript(request.command, request.env, true)

    let resolveExit: (code: number | null) => void = () => {}
    const exited = new Promise<number | null>(resolve => { resolveExit = resolve })
    const stdout = new ExitLineFilter(job.marker, request.onStdout, code => { resolveExit(code) })
    init.docker.modem.demuxStream(init.stream, sink(chunk => { stdout.write(chunk) }), sink(request.onStderr))
    init.stream.once('end', () => { stdout.end() })
    init.waited.then(() => { resolveExit(null) }, () => { resolveExit(null) })

    if (request.egress) {
      if (init.proxySocket === undefined) {
        throw new SandboxError('agent egress was requested but the node runs no egress proxy')
      }
      const relay = await startRelay(init.pid, init.proxySocket)
      this.stopRelay = relay.stop
    }
    init.stream.write(job.input)

    return {
      exited,
      kill: async () => { await this.kill() },
      stats: async () => await this.stats()
    }
  }

  private async stats (): Promise<CgroupStats> {
    const stats = await readCgroupStats(this.init.cgroup)
    // A killed container's cgroup is gone and reads as zeros, so keep the last real read.
    if (stats.cpuSeconds === 0 && this.lastStats !== undefined) {
      return this.lastStats
    }
    this.lastStats = stats
    return stats
  }

  /**
   * Kills the container's processes: straight through its cgroup when the
   * node may signal them (one system call each, no daemon round trip), else
   * through the daemon.
   */
  private async kill (): Promise<void> {
    if (this.lastStats === undefined) {
      await this.stats()
    }
    if (await killCgroupProcesses(this.init.cgroup) > 0) {
      return
    }
    try {
      await this.init.container.kill({ signal: 'SIGKILL', abortSignal: dockerCallSignal() })
    } catch (err) {
      if (!isGone(err)) {
        throw err
      }
    }
  }

  async discard (): Promise<void> {
    this.discarded ??= (async () => {
      this.stopRelay?.()
      await this.kill().catch((err: unknown) => { this.init.logger.warn({ err, container: this.id }, 'cannot kill container') })
      await this.init.container.kill({ signal: 'SIGKILL', abortSignal: dockerCallSignal() }).catch(() => {})
      // The wait ends once PID 1 is gone, and the kernel ends every other
      // process of the container before that. The stream then carries the last output.
      await withTimeout(Promise.all([this.init.waited.catch(() => {}), this.streamEnded]), DRAIN_TIMEOUT_MS)
      this.init.stream.destroy()
      await removeQuietly(this.init.container, this.init.logger)
      await this.init.workspaces.remove(this.workspace)
    })()
    await this.discarded
  }
}

async function withTimeout (promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([promise, new Promise(resolve => { timer = setTimeout(resolve, ms) })])
  clearTimeout(timer)
}

function sink (write: (chunk: Buffer) => void): Writable {
  return new Writable({
    write (chunk: Buffer, _encoding, callback) {
      write(chunk)
      callback()
    }
  })
}

/** Returns true for Docker responses that mean the container is already stopped or removed. */
export function isGone (err: unknown): boolean {
  const status = (err as { statusCode?: number }).statusCode
  return status === 404 || status === 409 || status === 304
}

/**
 * Removes a container and returns once it is gone. When AutoRemove got there
 * first, the daemon responds with 409 while its removal is in progress, so this
 * waits for that removal to finish.
 */
export async function removeQuietly (container: Docker.Container, logger?: Logger): Promise<void> {
  try {
    await container.remove({ force: true, v: true, abortSignal: dockerCallSignal() })
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 409) {
      await container.wait({ condition: 'removed', abortSignal: dockerCallSignal() }).catch(() => {})
    } else if (!isGone(err)) {
      logger?.warn({ err, container: container.id }, 'cannot remove container')
    }
  }
}
