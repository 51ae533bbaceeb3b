import { mkdir, readdir, realpath, stat, unlink } from 'node:fs/promises'
import path from 'node:path'
import { asBundleError, checkBundleFile, fsckRepository, listBundleHeads, verifyBundle } from './bundle.js'
import { cascadeBranch } from './branch.js'
import { BundleError, WorkspaceError } from './errors.js'
import { resolveLimits } from './limits.js'
import { scanWorkspace } from './workspace-scan.js'
import type { Stage } from '../cascade/stages.js'
import type { BundleHead } from './bundle.js'
import type { Git } from './git.js'
import type { GitLimits } from './limits.js'

/** The identity of commits the executor makes for an agent. */
export const EXECUTOR_IDENTITY = { name: 'emdx-node executor', email: 'executor@emdx-node.invalid' }

/** The branch HEAD names before the first checkout; it never gets a commit. */
const UNBORN_BRANCH = 'emdx-node-unborn'

/**
 * Settings for calls that touch the workspace. Links from the bundle are
 * checked out as plain files that contain the target, so no link from
 * another user ever exists on this machine. Git still records them as links.
 */
const WORKTREE_CONFIG = { 'core.symlinks': 'false', 'core.autocrlf': 'false' }

export interface PrepareWorkspaceOptions {
  git: Git
  bundlePath: string
  /** The job's workspace: an existing, empty folder that the sandbox will mount. */
  workspaceDir: string
  /**
   * A new folder for the repository, outside the workspace, so that the
   * agent cannot change the config or hooks that later git calls read.
   */
  gitDir: string
  docId: number | string
  stage: Stage
  /** The ref in the bundle to start from; the bundle's only branch when missing. */
  baseRef?: string
  limits?: Partial<GitLimits>
  signal?: AbortSignal
}

export interface PreparedWorkspace {
  workspaceDir: string
  gitDir: string
  branch: string
  /** The commit the branch starts from; the returned bundle builds on it. */
  baseCommit: string
  files: number
  bytes: number
}

/**
 * Executor side, before the agent runs: checks the bundle (size, format,
 * refs, `git fsck --strict`) and the tree it would check out (file count and
 * total size), then checks it out into the workspace on branch
 * `cascade/{docId}/{stage}`. Nothing is written to the workspace until
 * every check passed. The repository lives in `gitDir`, and every call
 * names it with `--git-dir`, so nothing in the workspace can change which
 * repository or config git uses. Because no repository is discovered, git's
 * ownership check (`safe.directory`) does not apply, even when the sandbox
 * user owns the workspace, and no `safe.directory` setting is needed.
 */
export async function prepareWorkspace (options: PrepareWorkspaceOptions): Promise<PreparedWorkspace> {
  const { git, signal } = options
  const limits = resolveLimits(options.limits)
  const branch = cascadeBranch(options.docId, options.stage)
  const { file: bundle } = await checkBundleFile(options.bundlePath, limits.maxBundleBytes)
  const { workspaceDir, gitDir } = await checkFolders(options.workspaceDir, options.gitDir)

  await git.run(['init', '--quiet', '--bare', '--template=', `--initial-branch=${UNBORN_BRANCH}`, gitDir], { signal })
  await verifyBundle(git, gitDir, bundle, signal)
  const base = chooseBaseRef(bundle, await listBundleHeads(git, bundle, signal), options.baseRef)
  // Fetching by object id keeps the bundle's ref names, which its sender chose, out of the refspec.
  await asBundleError(bundle, git.run([`--git-dir=${gitDir}`, 'fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--no-recurse-submodules', bundle, `${base.oid}:refs/heads/${branch}`], { signal }))
  await fsckRepository(git, gitDir, bundle, { signal })

  const tree = await checkTree(git, gitDir, bundle, branch, limits, signal)
  await git.run([`--git-dir=${gitDir}`, `--work-tree=${workspaceDir}`, 'checkout', '--quiet', branch], { signal, config: WORKTREE_CONFIG })
  return { workspaceDir, gitDir, branch, baseCommit: base.oid, files: tree.files, bytes: tree.bytes }
}

export interface CommitWorkspaceOptions {
  git: Git
  workspace: PreparedWorkspace
  /** The file to write the bundle of the branch to. */
  outFile: string
  message: string
  identity?: { name: string, email: string }
  limits?: Partial<GitLimits>
  signal?: AbortSignal
}

export interface CommittedWorkspace {
  commit: string
  bundlePath: string
  bundleBytes: number
  /** Paths the commit changed relative to the base commit. */
  changedFiles: string[]
}

/**
 * Executor side, after the agent ran and its sandbox stopped. Rejects the
 * workspace when it has links out of it, hard links, special files, an
 * entry named `.git` or more than the limits (see scanWorkspace). Then
 * commits everything on the branch with a fixed identity, also when
 * nothing changed, and writes a bundle of the new commits. The bundle
 * needs the base commit, which the requester has.
 */
export async function commitWorkspace (options: CommitWorkspaceOptions): Promise<CommittedWorkspace> {
  const { git, workspace, signal } = options
  const limits = resolveLimits(options.limits)
  const identity = options.identity ?? EXECUTOR_IDENTITY
  const worktree = [`--git-dir=${workspace.gitDir}`, `--work-tree=${workspace.workspaceDir}`]

  await scanWorkspace(workspace.workspaceDir, limits, signal)
  await git.run([...worktree, 'add', '--all'], { signal, config: WORKTREE_CONFIG })
  await git.run([...worktree, 'commit', '--quiet', '--allow-empty', '--no-verify', '--no-gpg-sign', '--message', options.message], {
    signal,
    config: WORKTREE_CONFIG,
    env: {
      GIT_AUTHOR_NAME: identity.name,
      GIT_AUTHOR_EMAIL: identity.email,
      GIT_COMMITTER_NAME: identity.name,
      GIT_COMMITTER_EMAIL: identity.email
    }
  })

  const gitDirArg = `--git-dir=${workspace.gitDir}`
  const commit = (await git.run([gitDirArg, 'rev-parse', '--verify', `refs/heads/${workspace.branch}^{commit}`], { signal })).stdout.trim()
  const diff = await git.run([gitDirArg, 'diff', '--name-only', '-z', '--no-renames', '--no-ext-diff', '--no-textconv', workspace.baseCommit, commit], { signal })
  const changedFiles = diff.stdout.split('\0').filter((name) => name !== '')

  const bundlePath = path.resolve(options.outFile)
  await mkdir(path.dirname(bundlePath), { recursive: true })
  await git.run([gitDirArg, 'bundle', 'create', '--quiet', bundlePath, `refs/heads/${workspace.branch}`, `^${workspace.baseCommit}`], { signal })
  const bundleBytes = (await stat(bundlePath)).size
  if (bundleBytes > limits.maxBundleBytes) {
    await unlink(bundlePath)
    throw new BundleError('ERR_BUNDLE_TOO_LARGE', bundlePath, `the stage's bundle is ${bundleBytes} bytes, over the limit of ${limits.maxBundleBytes} bytes (maxBundleBytes); the stage output is rejected`)
  }
  return { commit, bundlePath, bundleBytes, changedFiles }
}

async function checkFolders (workspace: string, gitDir: string): Promise<{ workspaceDir: string, gitDir: string }> {
  const workspaceDir = await realpath(workspace).catch((err: NodeJS.ErrnoException) => {
    throw new WorkspaceError('ERR_WORKSPACE_INVALID', workspace, `workspace ${workspace} cannot be used: ${err.message}; create the job's workspace folder first`, { cause: err })
  })
  if ((await readdir(workspaceDir)).length > 0) {
    throw new WorkspaceError('ERR_WORKSPACE_INVALID', workspace, `workspace ${workspaceDir} is not empty; give each job a new, empty workspace`)
  }

  const repository = path.resolve(gitDir)
  const repositoryParent = await realpath(path.dirname(repository)).catch(() => path.dirname(repository))
  const repositoryReal = path.join(repositoryParent, path.basename(repository))
  if (repositoryReal === workspaceDir || repositoryReal.startsWith(workspaceDir + path.sep)) {
    throw new WorkspaceError('ERR_WORKSPACE_INVALID', gitDir, `git folder ${repositoryReal} is inside the workspace ${workspaceDir}, where the agent could change its config; put it beside the workspace`)
  }
  const existing = await readdir(repositoryReal).catch(() => [])
  if (existing.length > 0) {
    throw new WorkspaceError('ERR_WORKSPACE_INVALID', gitDir, `git folder ${repositoryReal} is not empty; give each job a new git folder`)
  }
  return { workspaceDir, gitDir: repositoryReal }
}

function chooseBaseRef (bundle: string, heads: BundleHead[], baseRef: string | undefined): BundleHead {
  const branches = heads.filter((head) => head.ref.startsWith('refs/heads/'))
  if (baseRef !== undefined) {
    const requestedRef = baseRef.startsWith('refs/') ? baseRef : `refs/heads/${baseRef}`
    const head = branches.find((candidate) => candidate.ref === requestedRef)
    if (head === undefined) {
      throw new BundleError('ERR_BUNDLE_REFS', bundle, `bundle ${bundle} has no branch ${requestedRef}; it has ${describeRefs(heads)}`)
    }
    return head
  }
  if (branches.length !== 1) {
    throw new BundleError('ERR_BUNDLE_REFS', bundle, `bundle ${bundle} has ${branches.length} branches (${describeRefs(heads)}); send exactly one, or name the base branch`)
  }
  return branches[0] as BundleHead
}

function describeRefs (heads: BundleHead[]): string {
  return heads.length === 0 ? 'no refs' : heads.map((head) => head.ref).slice(0, 5).join(', ')
}

/**
 * Lists the tree the branch would check out and rejects it when it has
 * more files or bytes than the limits, or a path that git must never
 * write. Nothing is in the workspace yet, so a small bundle that would
 * expand to gigabytes is rejected before it fills the disk.
 */
async function checkTree (git: Git, gitDir: string, bundle: string, branch: string, limits: GitLimits, signal?: AbortSignal): Promise<{ files: number, bytes: number }> {
  const { stdout } = await git.run([`--git-dir=${gitDir}`, 'ls-tree', '-r', '-l', '-z', '--full-tree', `refs/heads/${branch}`], { signal })
  let files = 0
  let bytes = 0

  for (const entry of stdout.split('\0')) {
    if (entry === '') {
      continue
    }
    const tab = entry.indexOf('\t')
    const size = Number.parseInt(entry.slice(0, tab).trim().split(/\s+/)[3] ?? '', 10)
    const entryPath = entry.slice(tab + 1)
    if (entryPath.split('/').some((part) => part === '..' || part.toLowerCase() === '.git')) {
      throw new BundleError('ERR_BUNDLE_INVALID', bundle, `bundle ${bundle} has the path ${JSON.stringify(entryPath)}, which git must not check out`)
    }

    files++
    bytes += Number.isNaN(size) ? 0 : size
    if (files > limits.maxFiles) {
      throw new BundleError('ERR_CHECKOUT_TOO_LARGE', bundle, `bundle ${bundle} checks out more than ${limits.maxFiles} files (maxFiles); nothing was written`)
    }
    if (bytes > limits.maxContentBytes) {
      throw new BundleError('ERR_CHECKOUT_TOO_LARGE', bundle, `bundle ${bundle} checks out more than ${limits.maxContentBytes} bytes (maxContentBytes); nothing was written`)
    }
  }
  return { files, bytes }
}
