import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { chown } from 'node:fs/promises'
import { startRelay } from '../egress/relay.js'
import { SandboxError } from '../errors.js'
import { cgroupPathsNamed, childCgroups, createCgroup, killCgroupProcesses, procsFiles, readCgroupStats, removeCgroup, removeEmptyCgroupParent, setCgroupLimits } from '../cgroup.js'
import { bwrapArguments, wrapperArguments } from './arguments.js'
import { seccompFilter } from './seccomp.js'
import { jobScript, LAUNCHER_COMMAND } from '../launcher.js'
import type { CgroupPaths, CgroupStats } from '../cgroup.js'
import type { LaunchedSandbox, LaunchRequest, PreparedSandbox, PrepareRequest, SandboxBackendDriver } from '../sandbox.js'
import type { LeftoverReport, SandboxInfo, StageLimits } from '../types.js'
import { jobsOf } from '../workspace.js'
import type { Workspace, WorkspaceManager } from '../workspace.js'
import type { Logger } from '../../node/logger.js'
import type { ChildProcess } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'

/** Host user the sandbox user maps to when the node runs as root: `nobody`. */
export const BWRAP_HOST_UID = 65534

export interface BwrapDriverInit {
  nodeId: string
  workspaces: WorkspaceManager
  logger: Logger
  /** Whether the node can create cgroups; otherwise limits are resource limits (rlimits). */
  cgroups: boolean
  /** Unix socket of the egress proxy, for agent stages. */
  proxySocket?: string
  info: SandboxInfo
}

const HOST_PATH = '/usr/local/bin:/usr/bin:/bin'

/** Time allowed for output pipes to close after bubblewrap exits. */
const DRAIN_TIMEOUT_MS = 1000

/**
 * The bubblewrap backend: every namespace unshared, the image's root folder
 * mounted read-only, the workspace read-write, `--die-with-parent`, and the
 * node's own cgroup per job when it can write cgroups (rlimits otherwise).
 * When the node runs as root, bubblewrap runs as `nobody` in a user namespace,
 * so the stage's uid 1000 maps to an unprivileged host user. The seccomp
 * filter of `seccomp.ts` rejects mount, namespace, module, keyring, BPF and
 * similar system calls.
 */
export class BwrapDriver implements SandboxBackendDriver {
  readonly info: SandboxInfo
  private readonly init: BwrapDriverInit
  private readonly logger: Logger
  private readonly asRoot = process.getuid?.() === 0

  constructor (init: BwrapDriverInit) {
    this.init = init
    this.info = init.info
    this.logger = init.logger
  }

  private get cgroupParent (): string {
    return `emdx-node/${this.init.nodeId}`
  }

  private get hostOwner (): { uid: number, gid: number } {
    return this.asRoot ? { uid: BWRAP_HOST_UID, gid: BWRAP_HOST_UID } : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }
  }

  async prepare (request: PrepareRequest): Promise<PreparedSandbox> {
    const rootfs = request.image.rootfs
    if (rootfs === undefined) {
      throw new SandboxError(`image ${request.image.name} has no root file system folder for bubblewrap; pass --image ${request.image.name}=/path/to/rootfs`)
    }
    const workspace = await this.init.workspaces.create(request.jobId, request.limits.workspaceBytes, this.hostOwner)
    let cgroup: CgroupPaths | undefined
    try {
      if (this.init.cgroups) {
        cgroup = cgroupPathsNamed(this.cgroupParent, request.jobId)
        await createCgroup(cgroup, request.limits)
        // The wrapper runs as the sandbox's host user and moves itself into
        // the cgroup, which needs write access to these files only.
        for (const file of procsFiles(cgroup)) {
          await chown(file, this.hostOwner.uid, this.hostOwner.gid)
        }
      }
    } catch (err) {
      await this.init.workspaces.remove(workspace)
      throw new SandboxError(`cannot create the cgroup of job ${request.jobId}: ${(err as Error).message}`, { cause: err })
    }
    const sandbox = new BwrapSandbox({ driver: this.init, workspace, rootfs, limits: request.limits, cgroup, asRoot: this.asRoot, logger: this.logger.child({ job: request.jobId }) })
    try {
      await sandbox.start()
    } catch (err) {
      await sandbox.discard()
      throw err
    }
    return sandbox
  }

  async removeLeftovers (): Promise<LeftoverReport> {
    let processes = 0
    for (const name of await childCgroups(this.cgroupParent)) {
      processes += await removeCgroup(cgroupPathsNamed(this.cgroupParent, name))
    }
    const removed = await this.init.workspaces.removeAll()
    const jobs = jobsOf(removed)
    if (processes > 0 || removed.length > 0) {
      this.logger.info({ processes, workspaces: removed.length, jobs }, 'removed leftovers of an earlier run')
    }
    return { containers: 0, workspaces: removed.length, processes, jobs }
  }

  async close (): Promise<void> {
    await removeEmptyCgroupParent(this.cgroupParent)
  }
}

interface BwrapSandboxInit {
  driver: BwrapDriverInit
  workspace: Workspace
  rootfs: string
  limits: StageLimits
  cgroup?: CgroupPaths
  asRoot: boolean
  logger: Logger
}

/**
 * A started bubblewrap sandbox whose launcher waits on stdin for its one
 * job, as a Docker container does. Its mounts, namespaces and cgroup exist
 * before the job arrives, so a warm one runs a stage with one pipe write.
 */
class BwrapSandbox implements PreparedSandbox {
  readonly workspace: Workspace
  private readonly init: BwrapSandboxInit
  private child?: ChildProcess
  private exited?: Promise<number | null>
  private sandboxPid = 0
  private stopRelay?: () => void
  private launched = false
  private discarded?: Promise<void>
  private lastStats?: CgroupStats

  constructor (init: BwrapSandboxInit) {
    this.init = init
    this.workspace = init.workspace
  }

  /**
   * Lowers the sandbox's cgroup limits before its job starts. A sandbox
   * limited by resource limits alone (no writable cgroup) cannot change
   * them once started, so it resolves false.
   */
  async tighten (limits: { cpus: number, memoryBytes: number }): Promise<boolean> {
    if (this.init.cgroup === undefined) {
      return false
    }
    try {
      await setCgroupLimits(this.init.cgroup, { ...limits, pids: this.init.limits.pids })
      return true
    } catch (err) {
      this.init.logger.warn({ err }, 'cannot lower the limits of a warm sandbox')
      return false
    }
  }

  /** Starts bubblewrap and resolves once the sandbox exists, with the pid of its init process. */
  async start (): Promise<void> {
    const { init } = this
    // NOTE: on an architecture without a filter (not x86_64), the sandbox
    // runs without seccomp.
    const filter = seccompFilter()
    const bwrap = bwrapArguments({ rootfs: init.rootfs, workspace: init.workspace.path, limits: init.limits, seccomp: filter !== undefined, command: LAUNCHER_COMMAND })
    const args = wrapperArguments({
      procsFiles: init.cgroup === undefined ? [] : procsFiles(init.cgroup),
      limits: init.limits,
      rlimitsOnly: init.cgroup === undefined,
      bwrap
    })
    const owner = init.asRoot ? { uid: BWRAP_HOST_UID, gid: BWRAP_HOST_UID } : {}
    // Only PATH, to find bubblewrap: the job's variables arrive on stdin.
    const child = spawn('/bin/sh', args, { stdio: ['pipe', 'pipe', 'pipe', 'pipe', filter === undefined ? 'ignore' : 'pipe'], env: { PATH: HOST_PATH }, ...owner })
    this.child = child
    this.exited = exitCodeOf(child)
    this.exited.catch(() => {})
    // Node makes the extra stdio pipes sockets; bubblewrap closing its end
    // resets them, which is expected once the sandbox ends.
    child.stdio[3]?.on('error', () => {})
    child.stdio[4]?.on('error', () => {})
    child.stdin?.on('error', () => {})
    if (filter !== undefined) {
      (child.stdio[4] as Writable).end(filter)
    }
    this.sandboxPid = await readSandboxPid(child)
  }

  async launch (request: LaunchRequest): Promise<LaunchedSandbox> {
    const { child, exited } = this
    if (child === undefined || exited === undefined || this.launched) {
      throw new SandboxError(`sandbox ${this.workspace.jobId} is not ready or already ran a job; sandboxes are never reused`)
    }
    this.launched = true
    child.stdout?.on('data', request.onStdout)
    child.stderr?.on('data', request.onStderr)

    if (request.egress && this.init.driver.proxySocket !== undefined) {
      const relay = await startRelay(this.sandboxPid, this.init.driver.proxySocket)
      this.stopRelay = relay.stop
    }
    child.stdin?.end(jobScript(request.command, request.env, false).input)
    return {
      exited,
      kill: async () => { await this.kill() },
      stats: async () => await this.stats()
    }
  }

  private async stats (): Promise<CgroupStats> {
    if (this.init.cgroup === undefined) {
      return { cpuSeconds: 0, peakMemoryBytes: 0, oomKills: 0 }
    }
    const stats = await readCgroupStats(this.init.cgroup)
    this.lastStats = stats
    return stats
  }

  private async kill (): Promise<void> {
    if (this.init.cgroup !== undefined) {
      this.lastStats ??= await readCgroupStats(this.init.cgroup)
      await killCgroupProcesses(this.init.cgroup)
    }
    if (this.child?.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL')
    }
  }

  async discard (): Promise<void> {
    this.discarded ??= (async () => {
      this.stopRelay?.()
      await this.kill()
      await this.exited?.catch(() => {})
      if (this.init.cgroup !== undefined) {
        await removeCgroup(this.init.cgroup)
      }
      await this.init.driver.workspaces.remove(this.workspace)
    })()
    await this.discarded
  }
}

/**
 * Reads `{"child-pid": N}` from bubblewrap's info pipe: the host pid of the
 * sandbox's init process, whose network namespace the egress relay enters.
 */
async function readSandboxPid (child: ChildProcess): Promise<number> {
  let text = ''
  let stderr = ''
  const onStderr = (chunk: Buffer): void => { stderr += chunk.toString('utf8') }
  child.stderr?.on('data', onStderr)
  try {
    for await (const chunk of child.stdio[3] as Readable) {
      text += (chunk as Buffer).toString('utf8')
      if (text.includes('}')) {
        break
      }
    }
  } finally {
    child.stderr?.off('data', onStderr)
  }
  const pid = parseJson(text)?.['child-pid']
  if (typeof pid !== 'number') {
    throw new SandboxError(`bubblewrap did not start the sandbox: ${stderr.trim().slice(0, 500) || 'no error output'}`)
  }
  return pid
}

function parseJson (text: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(text) as Record<string, unknown>
  } catch {
    return undefined
  }
}

/** Resolves with bubblewrap's exit code (the command's) once its output pipes are drained; null when killed by a signal. */
async function exitCodeOf (child: ChildProcess): Promise<number | null> {
  const closed = once(child, 'close').catch(() => {})
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', (err) => { reject(new SandboxError(`cannot start bubblewrap: ${err.message}; install it (apt-get install bubblewrap)`, { cause: err })) })
    child.once('exit', (exitCode, signalCode) => { resolve([exitCode, signalCode]) })
  })
  let timer: NodeJS.Timeout | undefined
  await Promise.race([closed, new Promise(resolve => { timer = setTimeout(resolve, DRAIN_TIMEOUT_MS) })])
  clearTimeout(timer)
  return signal === null ? code : null
}
