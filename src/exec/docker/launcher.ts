import { randomBytes } from 'node:crypto'
import { SANDBOX_WORKSPACE } from '../spec.js'

/**
 * The command every stage container starts with. It waits on stdin for the
 * job: a byte count on one line, then a shell script of that many bytes.
 * Because the job arrives after the start, a container can be started ahead
 * of time (the warm pool), and the job's variables, the model API key among
 * them, never appear in the container's configuration or `docker inspect`.
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
 * Builds the job script: export the variables, enter the workspace, run the
 * command with stdin closed, print an exit line with a random nonce on
 * stderr, then wait until the node has read the cgroup's counters and kills
 * the container. The wait keeps the cgroup alive, so CPU time and peak memory
 * are read by the node, not reported by the stage.
 *
 * A stage that prints a forged exit line can only end its own run early,
 * because the node kills the container as soon as it reads one.
 */
export function jobScript (command: string[], env: Record<string, string>): JobScript {
  const nonce = randomBytes(12).toString('hex')
  const marker = `${EXIT_MARKER}${nonce}`
  const exports = Object.entries(env).map(([name, value]) => `export ${name}=${shellQuote(value)}`)
  const script = [
    ...exports,
    'mkdir -p "$HOME" 2>/dev/null',
    `cd ${SANDBOX_WORKSPACE} || exit 125`,
    `${command.map(shellQuote).join(' ')} </dev/null`,
    'status=$?',
    `printf '%s %s\\n' ${shellQuote(marker)} "$status" >&2`,
    'read -r _',
    'exit "$status"'
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
