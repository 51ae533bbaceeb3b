import { randomBytes } from 'node:crypto'
import { SANDBOX_WORKSPACE } from './spec.js'

/**
 * The command every sandbox starts with. It waits on stdin for the job: a
 * byte count on one line, then a shell script of that many bytes. Because
 * the job arrives after the start, a sandbox can be started ahead of time
 * (the warm pool), and the job's variables, the model API key among them,
 * never appear in a container's configuration, `docker inspect` or the
 * environment of a host process.
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
  /** Parses a stderr line: the command's exit code when it is this job's exit line. */
  exitCodeOf: (line: string) => { code: number, before: string } | undefined
}

/**
 * Builds the job script: export the variables, enter the workspace and run
 * the command with stdin closed. With `holdAfterExit` (Docker), it then
 * prints an exit line with a random nonce on stderr and waits until the node
 * has read the cgroup's counters and kills the container: the container's
 * cgroup disappears when it exits, and the wait keeps it, so CPU time and
 * peak memory are read by the node, not reported by the stage. Without it
 * (bubblewrap, whose cgroup the node owns), the script exits with the
 * command's status.
 *
 * A stage that prints a forged exit line can only end its own run early,
 * because the node kills the container as soon as it reads one.
 */
export function jobScript (command: string[], env: Record<string, string>, holdAfterExit: boolean): JobScript {
  const nonce = randomBytes(12).toString('hex')
  const marker = `${EXIT_MARKER}${nonce}`
  const exports = Object.entries(env).map(([name, value]) => `export ${name}=${shellQuote(value)}`)
  const run = `${command.map(shellQuote).join(' ')} </dev/null`
  const hold = [
    'status=$?',
    `printf '%s %s\\n' ${shellQuote(marker)} "$status" >&2`,
    'read -r _',
    'exit "$status"'
  ]
  const script = [
    ...exports,
    'mkdir -p "$HOME" 2>/dev/null',
    `cd ${SANDBOX_WORKSPACE} || exit 125`,
    ...(holdAfterExit ? [run, ...hold] : [`exec ${run}`])
  ].join('\n')

  return {
    input: `${Buffer.byteLength(script)}\n${script}`,
    exitCodeOf: (line: string) => {
      const at = line.lastIndexOf(`${marker} `)
      if (at < 0) {
        return undefined
      }
      const code = Number(line.slice(at + marker.length + 1).trim())
      return Number.isInteger(code) ? { code, before: line.slice(0, at) } : undefined
    }
  }
}
