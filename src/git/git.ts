import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { silentLogger } from '../node/logger.js'
import { GitError } from './errors.js'
import type { Logger } from '../node/logger.js'

/** How long one git command may run, in ms, unless the call sets its own. */
export const DEFAULT_GIT_TIMEOUT_MS = 120_000
/** The maximum standard output kept from one git command, in bytes. */
export const DEFAULT_MAX_GIT_OUTPUT_BYTES = 32 * 1024 * 1024
const MAX_STDERR_CHARS = 600

/**
 * Settings passed with `-c` on every call. Command-line settings override
 * the repository's config, so a repository cannot turn these back on.
 */
const HARDENED_CONFIG: ReadonlyArray<[string, string]> = [
  // No hooks run, from the repository or anywhere else.
  ['core.hooksPath', '/dev/null'],
  // core.fsmonitor may name a program that git would start.
  ['core.fsmonitor', 'false'],
  ['core.untrackedCache', 'false'],
  ['core.pager', 'cat'],
  ['core.sshCommand', 'false'],
  // Every transport is refused except local files, which is how git reads a bundle.
  ['protocol.allow', 'never'],
  ['protocol.file.allow', 'always'],
  // Malformed objects, `..` or `.git` tree entries and hostile .gitmodules are rejected on fetch.
  ['transfer.fsckObjects', 'true'],
  ['fetch.recurseSubmodules', 'false'],
  ['submodule.recurse', 'false'],
  ['gc.auto', '0'],
  ['maintenance.auto', 'false'],
  ['commit.gpgSign', 'false'],
  ['tag.gpgSign', 'false'],
  ['advice.detachedHead', 'false']
]

export interface GitOptions {
  /** The git executable; `git` from PATH by default. */
  gitPath?: string
  /** An empty folder used as HOME, so no user-level git or attribute file is read. */
  homeDir: string
  timeoutMs?: number
  logger?: Logger
}

export interface GitRunOptions {
  /** Folder the command runs in; arguments name repositories explicitly, so this rarely matters. */
  cwd?: string
  signal?: AbortSignal
  timeoutMs?: number
  maxOutputBytes?: number
  /** Extra environment variables, such as the commit identity. */
  env?: Record<string, string>
  /** Extra `-c name=value` settings for this call. */
  config?: Record<string, string>
}

export interface GitResult {
  stdout: string
  stderr: string
}

/**
 * Runs git with argument arrays (never through a shell), a clean
 * environment, hardened settings, a timeout and an AbortSignal. Every git
 * call of the cascade goes through `run`.
 *
 * The environment keeps no variable of this process except PATH: no user
 * or system git config (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`),
 * HOME an empty folder, no `GIT_DIR`, `GIT_CONFIG_*` or other variable
 * that would change which repository or config git uses.
 */
export class Git {
  readonly gitPath: string
  readonly homeDir: string
  private readonly timeoutMs: number
  private readonly logger: Logger

  constructor (options: GitOptions) {
    this.gitPath = options.gitPath ?? 'git'
    this.homeDir = options.homeDir
    this.timeoutMs = options.timeoutMs ?? DEFAULT_GIT_TIMEOUT_MS
    this.logger = (options.logger ?? silentLogger()).child({ component: 'git' })
  }

  /** Creates a Git whose HOME is a new empty folder under `tempRoot`; `dispose` removes it. */
  static async create (options: Omit<GitOptions, 'homeDir'> & { tempRoot?: string } = {}): Promise<Git> {
    const homeDir = await mkdtemp(path.join(options.tempRoot ?? os.tmpdir(), 'emdx-git-home-'))
    return new Git({ ...options, homeDir })
  }

  async dispose (): Promise<void> {
    await rm(this.homeDir, { recursive: true, force: true })
  }

  /** The environment every git call gets. */
  environment (extra: Record<string, string> = {}): Record<string, string> {
    return {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      HOME: this.homeDir,
      XDG_CONFIG_HOME: path.join(this.homeDir, '.config'),
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_ATTR_NOSYSTEM: '1',
      GIT_TERMINAL_PROMPT: '0',
      GIT_PROTOCOL_FROM_USER: '0',
      GIT_ALLOW_PROTOCOL: 'file',
      GIT_NO_REPLACE_OBJECTS: '1',
      GIT_OPTIONAL_LOCKS: '0',
      LC_ALL: 'C',
      ...extra
    }
  }

  /** Runs `git <args>`; resolves with its output on exit code 0, otherwise rejects with a GitError. */
  async run (args: string[], options: GitRunOptions = {}): Promise<GitResult> {
    const configArgs = [...HARDENED_CONFIG, ...Object.entries(options.config ?? {})].flatMap(([name, value]) => ['-c', `${name}=${value}`])
    const command = subcommand(args)
    const timeoutMs = options.timeoutMs ?? this.timeoutMs
    options.signal?.throwIfAborted()

    this.logger.debug({ command }, 'running git')
    return await new Promise<GitResult>((resolve, reject) => {
      const child = spawn(this.gitPath, [...configArgs, ...args], {
        cwd: options.cwd ?? this.homeDir,
        env: this.environment(options.env),
        stdio: ['ignore', 'pipe', 'pipe'],
        // A process group of its own, so a timeout also stops git's helpers (index-pack, pack-objects).
        detached: true
      })
      const maxOutputBytes = options.maxOutputBytes ?? DEFAULT_MAX_GIT_OUTPUT_BYTES
      const stdout: Buffer[] = []
      let stdoutBytes = 0
      let stderr = ''
      let stopped: 'timeout' | 'abort' | 'output' | undefined

      const stop = (reason: 'timeout' | 'abort' | 'output'): void => {
        stopped ??= reason
        killGroup(child.pid)
      }
      const timer = setTimeout(() => { stop('timeout') }, timeoutMs)
      const onAbort = (): void => { stop('abort') }
      options.signal?.addEventListener('abort', onAbort, { once: true })

      child.stdout.on('data', (chunk: Buffer) => {
        stdoutBytes += chunk.byteLength
        if (stdoutBytes > maxOutputBytes) {
          stop('output')
          return
        }
        stdout.push(chunk)
      })
      child.stderr.setEncoding('utf8')
      child.stderr.on('data', (chunk: string) => {
        stderr = (stderr + chunk).slice(-MAX_STDERR_CHARS)
      })

      child.on('error', (err) => {
        clearTimeout(timer)
        options.signal?.removeEventListener('abort', onAbort)
        reject(new GitError('ERR_GIT_FAILED', command, null, '', `cannot start ${this.gitPath}: ${err.message}; install git or pass its path`, { cause: err }))
      })
      child.on('close', (exitCode) => {
        clearTimeout(timer)
        options.signal?.removeEventListener('abort', onAbort)
        const failure = this.failure(command, exitCode, stderr.trim(), stopped, { timeoutMs, maxOutputBytes, signal: options.signal })
        if (failure !== undefined) {
          reject(failure)
          return
        }
        resolve({ stdout: Buffer.concat(stdout).toString('utf8'), stderr })
      })
    })
  }

  private failure (command: string, exitCode: number | null, stderr: string, stopped: 'timeout' | 'abort' | 'output' | undefined, limits: { timeoutMs: number, maxOutputBytes: number, signal?: AbortSignal }): Error | undefined {
    if (stopped === 'abort') {
      return limits.signal?.reason instanceof Error ? limits.signal.reason : new DOMException('git was cancelled', 'AbortError')
    }
    if (stopped === 'timeout') {
      this.logger.warn({ command, timeoutMs: limits.timeoutMs }, 'git timed out')
      return new GitError('ERR_GIT_TIMEOUT', command, exitCode, stderr, `git ${command} timed out after ${limits.timeoutMs} ms and was stopped; raise the git timeout or use a smaller repository`)
    }
    if (stopped === 'output') {
      return new GitError('ERR_GIT_OUTPUT_LIMIT', command, exitCode, stderr, `git ${command} printed more than ${limits.maxOutputBytes} bytes and was stopped`)
    }
    if (exitCode !== 0) {
      return new GitError('ERR_GIT_FAILED', command, exitCode, stderr, `git ${command} failed with exit code ${String(exitCode)}: ${stderr === '' ? 'no error output' : stderr}`)
    }
    return undefined
  }
}

/** Returns the git subcommand in `args`, skipping global options and their values. */
function subcommand (args: string[]): string {
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] as string
    if (arg === '-C' || arg === '-c') {
      index++
    } else if (!arg.startsWith('-')) {
      return arg
    }
  }
  return 'git'
}

function killGroup (pid: number | undefined): void {
  if (pid === undefined) {
    return
  }
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // The group has already exited.
  }
}
