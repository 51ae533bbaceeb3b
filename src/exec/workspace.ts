import { execFile } from 'node:child_process'
import { constants } from 'node:fs'
import { chown, lstat, mkdir, open, readFile, readdir, rm, statfs } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { SandboxError } from './errors.js'
import type { Logger } from '../node/logger.js'

const run = promisify(execFile)

/** A job's workspace on the host, the only host folder mounted in its sandbox. */
export interface Workspace {
  jobId: string
  path: string
  sizeBytes: number
  /** True when a tmpfs of `sizeBytes` is mounted there, so the kernel enforces the size cap. */
  capped: boolean
  /** Host user and group the sandbox user maps to; input files are given to them. */
  owner: WorkspaceOwner
}

export interface WorkspaceOwner {
  uid: number
  gid: number
}

/** Name prefix of warm pool slots, which belong to no job yet. */
export const WARM_SLOT_PREFIX = 'warm-'

/** Attempts to delete a workspace that the kernel still reports busy. */
const REMOVE_ATTEMPTS = 5

/** Free bytes below which a failed stage counts as stopped by the workspace size cap. */
const FULL_MARGIN_BYTES = 64 * 1024

/**
 * Creates and removes job workspaces below one folder of the data directory.
 * When the node runs as root, each workspace is a tmpfs mount of the job's
 * size, so writes past the cap fail with ENOSPC. Otherwise it is a plain
 * folder and the backends poll its size.
 */
export class WorkspaceManager {
  readonly root: string
  private readonly logger: Logger
  private readonly canMount: boolean

  constructor (root: string, logger: Logger) {
    this.root = root
    this.logger = logger
    this.canMount = process.getuid?.() === 0
  }

  async create (jobId: string, sizeBytes: number, owner: WorkspaceOwner): Promise<Workspace> {
    const folder = path.join(this.root, jobId)
    // Search permission without listing: bubblewrap runs as an unprivileged
    // host user that must reach its own workspace, and nothing else.
    await mkdir(this.root, { recursive: true, mode: 0o711 })
    try {
      await mkdir(folder, { mode: 0o700 })
    } catch (err) {
      throw new SandboxError(`cannot create workspace ${folder}: ${(err as Error).message}; is job ${jobId} already running?`, { cause: err })
    }

    let capped = false
    if (this.canMount) {
      // NOTE: tmpfs pages are charged to the memory cgroup of the process that
      // writes them, so a stage's workspace also counts against its memory.
      const options = `size=${sizeBytes},mode=0700,uid=${owner.uid},gid=${owner.gid},nosuid,nodev`
      try {
        await run('mount', ['-t', 'tmpfs', '-o', options, `emdx-${jobId}`, folder])
        capped = true
      } catch (err) {
        await rm(folder, { recursive: true, force: true })
        throw new SandboxError(`cannot mount a ${sizeBytes}-byte tmpfs on workspace ${folder}: ${(err as Error).message}`, { cause: err })
      }
    } else {
      await chown(folder, owner.uid, owner.gid).catch(() => {})
    }
    return { jobId, path: folder, sizeBytes, capped, owner }
  }

  /** Unmounts and deletes a workspace. Deleting never follows links out of it. */
  async remove (workspace: Workspace): Promise<void> {
    await this.removeFolder(workspace.path)
  }

  /** Removes every workspace below the root, the leftovers of a node that died, and returns their names. */
  async removeAll (): Promise<string[]> {
    let entries: string[]
    try {
      entries = await readdir(this.root)
    } catch {
      return []
    }
    for (const entry of entries) {
      await this.removeFolder(path.join(this.root, entry))
    }
    return entries
  }

  private async removeFolder (folder: string): Promise<void> {
    if (await isMountPoint(folder)) {
      try {
        await run('umount', [folder])
      } catch {
        // A process that still uses the mount is being killed, and it must not
        // keep the workspace. Detach the mount now, and the kernel frees it later.
        await run('umount', ['-l', folder]).catch((err: unknown) => {
          this.logger.warn({ err, folder }, 'cannot unmount workspace')
        })
      }
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await rm(folder, { recursive: true, force: true })
        return
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || attempt >= REMOVE_ATTEMPTS) {
          throw err
        }
        await new Promise(resolve => setTimeout(resolve, 50 * attempt))
      }
    }
  }
}

/** Bytes used in a workspace: from the file system when capped, else by walking it. */
export async function workspaceUsedBytes (workspace: Workspace): Promise<number> {
  if (workspace.capped) {
    const stats = await statfs(workspace.path)
    return (stats.blocks - stats.bfree) * stats.bsize
  }
  return await folderSize(workspace.path)
}

/** True when the workspace has (almost) no room left. */
export async function isWorkspaceFull (workspace: Workspace): Promise<boolean> {
  return await workspaceUsedBytes(workspace) >= workspace.sizeBytes - FULL_MARGIN_BYTES
}

/** Returns the job ids among workspace names and labels, without warm pool slots and repeats. */
export function jobsOf (names: string[]): string[] {
  return [...new Set(names.filter(name => name !== '' && !name.startsWith(WARM_SLOT_PREFIX)))].sort()
}

async function isMountPoint (folder: string): Promise<boolean> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8')
  return mountinfo.split('\n').some(line => line.split(' ')[4] === folder)
}

async function folderSize (folder: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    const entryPath = path.join(folder, entry.name)
    if (entry.isDirectory()) {
      total += await folderSize(entryPath)
    } else {
      total += (await lstat(entryPath)).size
    }
  }
  return total
}

/** A regular file collected from a workspace. */
export interface CollectedFile {
  /** Path relative to the workspace, with `/` separators. */
  path: string
  content: Buffer
}

export interface CollectedFiles {
  files: CollectedFile[]
  /** Entries not read, with the reason: `symlink`, `hardlink`, `special`, `too large`. */
  skipped: Array<{ path: string, reason: string }>
}

/**
 * Reads the regular files of a workspace for results without following any
 * link. A symlink is skipped, and so is a file with more than one hard link,
 * because it may be shared with a file outside the workspace. Every file is
 * opened with O_NOFOLLOW and checked to be the inode that was listed.
 */
export async function collectWorkspaceFiles (root: string, maxTotalBytes: number): Promise<CollectedFiles> {
  const collected: CollectedFiles = { files: [], skipped: [] }
  let total = 0

  const walk = async (relative: string): Promise<void> => {
    for (const entry of await readdir(path.join(root, relative), { withFileTypes: true })) {
      const entryRelative = relative === '' ? entry.name : `${relative}/${entry.name}`
      const info = await lstat(path.join(root, entryRelative))
      if (info.isSymbolicLink()) {
        collected.skipped.push({ path: entryRelative, reason: 'symlink' })
      } else if (info.isDirectory()) {
        await walk(entryRelative)
      } else if (!info.isFile()) {
        collected.skipped.push({ path: entryRelative, reason: 'special' })
      } else if (info.nlink > 1) {
        collected.skipped.push({ path: entryRelative, reason: 'hardlink' })
      } else if (total + info.size > maxTotalBytes) {
        collected.skipped.push({ path: entryRelative, reason: 'too large' })
      } else {
        const content = await readRegularFile(path.join(root, entryRelative), info.ino)
        if (content === undefined) {
          collected.skipped.push({ path: entryRelative, reason: 'changed while read' })
        } else {
          total += content.length
          collected.files.push({ path: entryRelative, content })
        }
      }
    }
  }
  await walk('')
  return collected
}

async function readRegularFile (file: string, inode: number): Promise<Buffer | undefined> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  try {
    const info = await handle.stat()
    if (info.ino !== inode || !info.isFile() || info.nlink > 1) {
      return undefined
    }
    return await handle.readFile()
  } finally {
    await handle.close()
  }
}
