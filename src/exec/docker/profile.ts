import { SANDBOX_GID, SANDBOX_UID, SANDBOX_WORKSPACE } from '../spec.js'
import { LAUNCHER_COMMAND } from '../launcher.js'
import type { StageLimits } from '../types.js'
import type { ContainerCreateOptions } from 'dockerode'

/** Labels that mark a container as this node's, so a restart can find its leftovers. */
export const LABEL_NODE = 'emdx.node'
export const LABEL_JOB = 'emdx.job'

export interface ProfileInit {
  image: string
  runtime: 'runsc' | 'runc'
  nodeId: string
  /** Job id, or the warm slot's name for a pooled container. */
  jobId: string
  workspace: string
  limits: StageLimits
  /** Host user and group the stage runs as; never root. */
  user: { uid: number, gid: number }
}

/**
 * Returns the user a container runs as: uid 1000 when the node is root, which
 * owns the workspace tmpfs it mounts for it; otherwise the node's own user,
 * which owns the workspace folder, because without user namespace remapping
 * a container's uid is the host's.
 *
 * NOTE: the tests run as root, so the path for a node that is not root has
 * not run here.
 */
export function containerUser (): { uid: number, gid: number } {
  const uid = process.getuid?.() ?? 0
  if (uid === 0) {
    return { uid: SANDBOX_UID, gid: SANDBOX_GID }
  }
  return { uid, gid: process.getgid?.() ?? uid }
}

/**
 * Builds the hardened container configuration. It has no network, a
 * read-only root, no capabilities, no-new-privileges and Docker's default
 * seccomp profile (applied because none is named). It runs as a non-root
 * user with pids, memory (swap equal to memory, so none), CPU, file-size and
 * open-file limits, a bounded /tmp and docker-init as PID 1. The daemon keeps
 * no log, and the job's workspace is the only host path.
 */
export function containerProfile (init: ProfileInit): ContainerCreateOptions {
  const { limits } = init
  return {
    Image: init.image,
    Cmd: LAUNCHER_COMMAND,
    User: `${init.user.uid}:${init.user.gid}`,
    WorkingDir: SANDBOX_WORKSPACE,
    Env: [],
    Labels: { [LABEL_NODE]: init.nodeId, [LABEL_JOB]: init.jobId },
    NetworkDisabled: true,
    Hostname: 'sandbox',
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    StdinOnce: true,
    Tty: false,
    HostConfig: {
      Runtime: init.runtime,
      NetworkMode: 'none',
      ReadonlyRootfs: true,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      Privileged: false,
      IpcMode: 'private',
      PidsLimit: limits.pids,
      Memory: limits.memoryBytes,
      MemorySwap: limits.memoryBytes,
      NanoCpus: Math.round(limits.cpus * 1e9),
      Ulimits: [
        { Name: 'fsize', Soft: limits.fileSizeBytes, Hard: limits.fileSizeBytes },
        { Name: 'nofile', Soft: limits.openFiles, Hard: limits.openFiles }
      ],
      Tmpfs: { '/tmp': `rw,nosuid,nodev,size=${limits.tmpBytes},mode=1777` },
      Mounts: [{ Type: 'bind', Source: init.workspace, Target: SANDBOX_WORKSPACE, ReadOnly: false }],
      Init: true,
      AutoRemove: true,
      LogConfig: { Type: 'none', Config: {} }
    }
  }
}
