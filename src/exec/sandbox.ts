import type { CgroupStats } from './cgroup.js'
import type { SandboxImage } from './images.js'
import type { LeftoverReport, SandboxInfo, StageLimits } from './types.js'
import type { Workspace } from './workspace.js'

/**
 * Interface of a backend: prepare a sandbox with its workspace, launch one
 * command in it, and clean up. The shared lifecycle (limits, output cap,
 * deadline, outcome, agent result) lives in `SandboxExecutor`, so both
 * backends report runs the same way.
 */
export interface SandboxBackendDriver {
  readonly info: SandboxInfo
  /** Creates the sandbox's workspace and, where the backend can, the sandbox itself (waiting for its command). */
  prepare: (request: PrepareRequest) => Promise<PreparedSandbox>
  removeLeftovers: (signal?: AbortSignal) => Promise<LeftoverReport>
  close: () => Promise<void>
}

export interface PrepareRequest {
  jobId: string
  image: SandboxImage
  limits: StageLimits
  signal?: AbortSignal
}

export interface LaunchRequest {
  command: string[]
  env: Record<string, string>
  /** Starts the egress relay inside the sandbox before the command runs. */
  egress: boolean
  onStdout: (chunk: Buffer) => void
  onStderr: (chunk: Buffer) => void
}

/** A sandbox ready for its one command. */
export interface PreparedSandbox {
  workspace: Workspace
  /** Starts the command; resolves once it runs. */
  launch: (request: LaunchRequest) => Promise<LaunchedSandbox>
  /** Removes the sandbox and its workspace; safe to call on every path, also twice. */
  discard: () => Promise<void>
  /**
   * Lowers the sandbox's memory and CPU limits before its job starts, so a
   * warm sandbox prepared with the executor's largest limits can serve a job
   * that needs less. Resolves false when the backend cannot change them.
   */
  tighten?: (limits: { cpus: number, memoryBytes: number }) => Promise<boolean>
}

export interface LaunchedSandbox {
  /** Resolves when the command exits: its exit code, or null when it was killed. */
  exited: Promise<number | null>
  /** Kills every process of the sandbox at once, stopped ones too. */
  kill: () => Promise<void>
  /** Resource use; read before `kill` where possible, because killing may remove the cgroup. */
  stats: () => Promise<CgroupStats>
}
