import { StageSpecError } from './errors.js'
import type { StageLimits, StageSpec } from './types.js'

/** Limits a stage gets when neither the spec nor the executor sets them. */
export const DEFAULT_LIMITS: StageLimits = {
  timeoutMs: 30 * 60_000,
  memoryBytes: 1024 ** 3,
  cpus: 1,
  pids: 256,
  outputBytes: 1024 ** 2,
  workspaceBytes: 1024 ** 3,
  fileSizeBytes: 1024 ** 3,
  openFiles: 1024,
  tmpBytes: 64 * 1024 ** 2
}

/** Where the workspace appears inside every sandbox. */
export const SANDBOX_WORKSPACE = '/workspace'

/** Home folder of the sandbox user: a tmpfs, because the root is read-only. */
export const SANDBOX_HOME = '/tmp/home'

/** User and group the stage runs as inside the sandbox; never root. */
export const SANDBOX_UID = 1000
export const SANDBOX_GID = 1000

const JOB_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/

/** Variables only the executor sets: the stage may not replace them. */
const RESERVED_ENV_NAMES = new Set(['PATH', 'HOME', 'USER', 'LANG', 'PWD', 'SHELL', 'TMPDIR', 'LD_PRELOAD', 'LD_LIBRARY_PATH'])
const RESERVED_ENV_PREFIXES = ['ANTHROPIC_', 'CLAUDE_', 'EMDX_', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'all_proxy']

const MAX_ENV_BYTES = 64 * 1024

/** Checks a spec before anything is prepared and returns its limits merged over `defaults`. */
export function validateSpec (spec: StageSpec, defaults: StageLimits): StageLimits {
  if (!JOB_ID_PATTERN.test(spec.jobId)) {
    throw new StageSpecError(`invalid job id "${spec.jobId}": use 1 to 64 letters, digits, "-" or "_"`)
  }
  const hasCommand = spec.command !== undefined
  const hasAgent = spec.agent !== undefined
  if (hasCommand === hasAgent) {
    throw new StageSpecError(`job ${spec.jobId}: set exactly one of command and agent`)
  }
  if (hasCommand && (spec.command?.length === 0 || spec.command?.some(part => typeof part !== 'string' || part.includes('\0')) === true)) {
    throw new StageSpecError(`job ${spec.jobId}: the command must be a non-empty list of strings without NUL characters`)
  }
  if (hasAgent && (typeof spec.agent?.prompt !== 'string' || spec.agent.prompt === '')) {
    throw new StageSpecError(`job ${spec.jobId}: the agent task needs a non-empty prompt`)
  }
  validateEnv(spec)
  return resolveLimits(spec, defaults)
}

function validateEnv (spec: StageSpec): void {
  let bytes = 0
  for (const [name, value] of Object.entries(spec.env ?? {})) {
    if (!ENV_NAME_PATTERN.test(name)) {
      throw new StageSpecError(`job ${spec.jobId}: invalid variable name "${name}"; use letters, digits and "_", not starting with a digit`)
    }
    if (RESERVED_ENV_NAMES.has(name) || RESERVED_ENV_PREFIXES.some(prefix => name.startsWith(prefix))) {
      throw new StageSpecError(`job ${spec.jobId}: variable ${name} is set by the executor and cannot be passed by a stage`)
    }
    if (typeof value !== 'string' || value.includes('\0')) {
      throw new StageSpecError(`job ${spec.jobId}: variable ${name} must be a string without NUL characters`)
    }
    bytes += name.length + Buffer.byteLength(value) + 2
  }
  if (bytes > MAX_ENV_BYTES) {
    throw new StageSpecError(`job ${spec.jobId}: the variables take ${bytes} bytes; the maximum is ${MAX_ENV_BYTES}`)
  }
}

function resolveLimits (spec: StageSpec, defaults: StageLimits): StageLimits {
  const limits = { ...defaults, ...spec.limits }
  for (const [name, value] of Object.entries(limits)) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new StageSpecError(`job ${spec.jobId}: invalid limit ${name} ${String(value)}; expected a positive number`)
    }
    const ceiling = defaults[name as keyof StageLimits]
    if (value > ceiling) {
      throw new StageSpecError(`job ${spec.jobId}: limit ${name} ${value} is above this executor's maximum ${ceiling}`)
    }
  }
  return limits
}

/**
 * Builds the environment of a stage: a fixed base, the stage's checked
 * variables, then the executor's own (agent and proxy variables), which win.
 */
export function stageEnvironment (spec: StageSpec, executorEnv: Record<string, string>): Record<string, string> {
  return {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: SANDBOX_HOME,
    TMPDIR: '/tmp',
    LANG: 'C.UTF-8',
    ...spec.env,
    ...executorEnv
  }
}
