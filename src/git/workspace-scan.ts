import { lstat, readdir, readlink, realpath } from 'node:fs/promises'
import path from 'node:path'
import { WorkspaceError } from './errors.js'
import type { GitLimits } from './limits.js'

export interface ScanResult {
  /** Files, symbolic links and folders. */
  entries: number
  /** Bytes of regular file content. */
  bytes: number
}

/**
 * Walks a workspace after the agent ran and before git reads it, without
 * following any link. Raises a WorkspaceError for anything emdx-node will
 * not commit: a symbolic link that is absolute or leaves the workspace at
 * any step, a file with several hard links, a FIFO, socket or device, an
 * entry named `.git`, or more entries or bytes than the limits. The agent
 * must have stopped, because a file changed after the walk is not seen.
 */
export async function scanWorkspace (root: string, limits: Pick<GitLimits, 'maxFiles' | 'maxContentBytes'>, signal?: AbortSignal): Promise<ScanResult> {
  const rootReal = await realpath(root)
  const result: ScanResult = { entries: 0, bytes: 0 }
  const folders = ['']

  while (folders.length > 0) {
    signal?.throwIfAborted()
    const folder = folders.pop() as string
    for (const name of await readdir(path.join(rootReal, folder))) {
      const relative = folder === '' ? name : `${folder}/${name}`
      const kind = await checkEntry(rootReal, relative, result, limits)
      if (kind === 'folder') {
        folders.push(relative)
      }
    }
  }
  return result
}

async function checkEntry (rootReal: string, relative: string, result: ScanResult, limits: Pick<GitLimits, 'maxFiles' | 'maxContentBytes'>): Promise<'folder' | 'other'> {
  if (path.basename(relative).toLowerCase() === '.git') {
    throw new WorkspaceError('ERR_WORKSPACE_GIT_DIR', relative, `workspace entry ${relative} is named .git, which git would treat as another repository; agents must not create repositories in the workspace`)
  }

  result.entries++
  if (result.entries > limits.maxFiles) {
    throw new WorkspaceError('ERR_WORKSPACE_TOO_LARGE', relative, `workspace has more than ${limits.maxFiles} files, links and folders (maxFiles); the stage output is rejected`)
  }

  const absolute = path.join(rootReal, relative)
  const info = await lstat(absolute)
  if (info.isDirectory()) {
    return 'folder'
  }
  if (info.isSymbolicLink()) {
    await checkSymlink(rootReal, relative)
    return 'other'
  }
  if (!info.isFile()) {
    throw new WorkspaceError('ERR_WORKSPACE_SPECIAL_FILE', relative, `workspace entry ${relative} is a FIFO, socket or device; only files, folders and links are committed`)
  }
  if (info.nlink > 1) {
    throw new WorkspaceError('ERR_WORKSPACE_HARDLINK', relative, `workspace file ${relative} has ${info.nlink} hard links; hard links are rejected because one could share content with a file outside the workspace`)
  }

  result.bytes += info.size
  if (result.bytes > limits.maxContentBytes) {
    throw new WorkspaceError('ERR_WORKSPACE_TOO_LARGE', relative, `workspace files exceed ${limits.maxContentBytes} bytes (maxContentBytes) at ${relative}; the stage output is rejected`)
  }
  return 'other'
}

/**
 * Resolves a link's target one path component at a time, following links
 * that exist, and rejects it when any step is outside the workspace. A
 * step outside is rejected even when a later one comes back in, because
 * such a target depends on the name of the folder the repository is in.
 */
async function checkSymlink (rootReal: string, relative: string): Promise<void> {
  const absolute = path.join(rootReal, relative)
  const target = await readlink(absolute)
  const reject = (reason: string): never => {
    throw new WorkspaceError('ERR_WORKSPACE_SYMLINK', relative, `workspace link ${relative} points to ${JSON.stringify(target)}, ${reason}; links must stay inside the workspace`)
  }

  if (path.isAbsolute(target)) {
    reject('an absolute path')
  }

  let current = path.dirname(absolute)
  for (const component of target.split('/')) {
    if (component === '' || component === '.') {
      continue
    }
    current = component === '..' ? path.dirname(current) : await followIfPresent(path.join(current, component))
    if (!isInside(rootReal, current)) {
      reject('which leaves the workspace')
    }
  }
}

/** Returns the real path of `candidate` when it exists; a missing or looping path stays as it is. */
async function followIfPresent (candidate: string): Promise<string> {
  try {
    return await realpath(candidate)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR') {
      return candidate
    }
    throw err
  }
}

function isInside (root: string, candidate: string): boolean {
  return candidate === root || candidate.startsWith(root + path.sep)
}
