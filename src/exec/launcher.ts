import { randomBytes } from 'node:crypto'
import { SANDBOX_WORKSPACE } from './spec.js'

/**
 * The command every sandbox starts with. It waits on stdin for the job: a
 * byte count on one line, then a shell script of that many bytes. Because
 * the job arrives after the start, a sandbox can be started ahead of time
 * (the warm pool). The job's variables, the model API key among them, never
 * appear in a container's configuration, `docker inspect` or the environment
 * of a host process.
 */
export const LAUNCHER_COMMAND = ['/bin/sh', '-c', 'IFS= read -r length || exit 125\nscript=$(head -c "$length") || exit 125\neval "$script"']

/** Prefix of the line the job script prints on stderr when the command exits. */
const EXIT_MARKER = 'EMDX-EXIT-'

/** Quotes a value for the POSIX shell: single quotes, with each `'` closed, escaped and reopened. */
export function shellQuote (value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`
}

export interface JobScript {
  /** The bytes to write to the launcher's stdin. */
  input: string
  /** The exit line's prefix, unique to this job; empty without `holdAfterExit`. */
  marker: string
}

/**
 * Builds the job script: export the variables, enter the workspace and run
 * the command with stdin closed. With `holdAfterExit` (Docker), it then
 * prints an exit line with a random nonce on stdout and waits until the node
 * has read the cgroup's counters and kills the container. The container's
 * cgroup disappears when it exits, and the wait keeps it, so CPU time and
 * peak memory are read by the node, not reported by the stage. The exit line
 * goes to stdout because Docker delivers stdout and stderr out of order:
 * after it, no stdout of the stage can still be in flight. Without
 * `holdAfterExit` (bubblewrap, whose cgroup the node owns), the script exits
 * with the command's status.
 *
 * A stage that prints a forged exit line can only end its own run early,
 * because the node kills the container as soon as it reads one.
 */
export function jobScript (command: string[], env: Record<string, string>, holdAfterExit: boolean): JobScript {
  const marker = holdAfterExit ? `${EXIT_MARKER}${randomBytes(12).toString('hex')}` : ''
  const exports = Object.entries(env).map(([name, value]) => `export ${name}=${shellQuote(value)}`)
  const run = `${command.map(shellQuote).join(' ')} </dev/null`
  const hold = [
    'status=$?',
    `printf '%s %s\\n' ${shellQuote(marker)} "$status"`,
    'read -r _',
    'exit "$status"'
  ]
  const script = [
    ...exports,
    'mkdir -p "$HOME" 2>/dev/null',
    `cd ${SANDBOX_WORKSPACE} || exit 125`,
    ...(holdAfterExit ? [run, ...hold] : [`exec ${run}`])
  ].join('\n')

  return { input: `${Buffer.byteLength(script)}\n${script}`, marker }
}

/** Maximum length of the exit line after the marker: a space, up to 3 digits and a newline. */
const MAX_EXIT_SUFFIX_BYTES = 6

/**
 * Passes a stdout stream through until the job's exit line, which it removes
 * and reports. It holds back only as many bytes as the exit line could span
 * across two chunks, so the rest of the output is passed on at once.
 */
export class ExitLineFilter {
  private readonly marker: Buffer
  private readonly onOutput: (chunk: Buffer) => void
  private readonly onExit: (code: number) => void
  private pending = Buffer.alloc(0)
  private done = false

  constructor (marker: string, onOutput: (chunk: Buffer) => void, onExit: (code: number) => void) {
    this.marker = Buffer.from(`${marker} `)
    this.onOutput = onOutput
    this.onExit = onExit
  }

  write (chunk: Buffer): void {
    if (this.done) {
      return
    }
    const data = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    const at = data.indexOf(this.marker)
    if (at < 0) {
      const keep = Math.min(data.length, this.marker.length - 1)
      this.emit(data.subarray(0, data.length - keep))
      this.pending = Buffer.from(data.subarray(data.length - keep))
      return
    }

    this.emit(data.subarray(0, at))
    const rest = data.subarray(at + this.marker.length)
    const newline = rest.indexOf(0x0a)
    if (newline < 0) {
      // The exit line is still arriving.
      this.pending = Buffer.from(data.subarray(at))
      if (rest.length > MAX_EXIT_SUFFIX_BYTES) {
        this.flushAsOutput()
      }
      return
    }
    const code = Number(rest.subarray(0, newline).toString('latin1'))
    this.done = true
    this.pending = Buffer.alloc(0)
    this.onExit(Number.isInteger(code) ? code : -1)
  }

  /** Passes on what is held back; called when the stream ends without an exit line. */
  end (): void {
    this.flushAsOutput()
  }

  private flushAsOutput (): void {
    this.emit(this.pending)
    this.pending = Buffer.alloc(0)
  }

  private emit (chunk: Buffer): void {
    if (chunk.length > 0) {
      this.onOutput(chunk)
    }
  }
}
