import { SANDBOX_GID, SANDBOX_HOME, SANDBOX_UID, SANDBOX_WORKSPACE } from '../spec.js'
import type { StageLimits } from '../types.js'

export interface BwrapArgumentsInit {
  rootfs: string
  workspace: string
  limits: StageLimits
  /** Whether fd 4 carries a seccomp filter for `--seccomp`. */
  seccomp: boolean
  command: string[]
}

/** Builds the bubblewrap command line: the hardened profile of this backend. */
export function bwrapArguments (init: BwrapArgumentsInit): string[] {
  const args = [
    'bwrap',
    '--unshare-all',
    '--unshare-user',
    '--disable-userns',
    '--uid', String(SANDBOX_UID),
    '--gid', String(SANDBOX_GID),
    '--hostname', 'sandbox',
    '--die-with-parent',
    '--new-session',
    '--cap-drop', 'ALL',
    '--ro-bind', init.rootfs, '/',
    '--proc', '/proc',
    '--dev', '/dev',
    '--size', String(init.limits.tmpBytes),
    '--tmpfs', '/tmp',
    '--dir', SANDBOX_HOME,
    '--bind', init.workspace, SANDBOX_WORKSPACE,
    '--chdir', SANDBOX_WORKSPACE
  ]
  // fd 3 receives the host pid of the sandbox's init, for the egress relay.
  args.push('--info-fd', '3')
  if (init.seccomp) {
    args.push('--seccomp', '4')
  }
  args.push('--', ...init.command)
  return args
}

export interface WrapperArgumentsInit {
  /** cgroup.procs files the wrapper writes its own pid into before it runs bubblewrap. */
  procsFiles: string[]
  limits: StageLimits
  /** Without cgroups, memory and processes are bounded by rlimits instead. */
  rlimitsOnly: boolean
  bwrap: string[]
}

/**
 * Builds the arguments for `/bin/sh`: a wrapper that joins the job's cgroup
 * and then becomes `prlimit`, which sets the rlimits and becomes bubblewrap,
 * so every process of the stage starts inside the cgroup and under the
 * limits. Positional parameters carry every value, so nothing is parsed as
 * shell code.
 */
export function wrapperArguments (init: WrapperArgumentsInit): string[] {
  const script = [
    'n=$1; shift',
    'while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 126; shift; n=$((n-1)); done',
    'exec "$@"'
  ].join('\n')

  const limit = (name: string, value: number): string => `--${name}=${value}:${value}`
  const rlimits = [limit('nofile', init.limits.openFiles), limit('fsize', init.limits.fileSizeBytes)]
  if (init.rlimitsOnly) {
    // NOTE: with rlimits only, the address space limit is not a bound on
    // resident memory, and nproc counts every process of the host user.
    rlimits.push(limit('nproc', init.limits.pids), limit('as', init.limits.memoryBytes))
  }
  return ['-c', script, 'emdx-sandbox', String(init.procsFiles.length), ...init.procsFiles, 'prlimit', ...rlimits, '--', ...init.bwrap]
}
