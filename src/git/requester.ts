import { randomUUID } from 'node:crypto'
import { mkdir, stat, unlink } from 'node:fs/promises'
import path from 'node:path'
import { asBundleError, checkBundleFile, fsckBundleAgainst, listBundleHeads } from './bundle.js'
import { cascadeBranch } from './branch.js'
import { BundleError, GitError, WorkspaceError } from './errors.js'
import { resolveLimits } from './limits.js'
import type { Stage } from '../cascade/stages.js'
import type { Git } from './git.js'
import type { GitLimits } from './limits.js'

/** The ref namespace that holds fetched commits while they are checked, before the cascade branch is created. */
const INCOMING_REF_PREFIX = 'refs/emdx-node/incoming/'

export interface CreateBundleOptions {
  git: Git
  /** The user's repository, or any folder inside it. */
  repoDir: string
  /** The branch to send: the base branch, or a previous stage's branch; the current branch when missing. */
  branch?: string
  outFile: string
  limits?: Partial<GitLimits>
  signal?: AbortSignal
}

export interface CreatedBundle {
  bundlePath: string
  /** The full ref in the bundle, such as `refs/heads/main`. */
  ref: string
  /** The commit the branch points to; the executor's branch starts there. */
  commit: string
  bytes: number
}

/**
 * Requester side: writes a bundle of one branch of the user's repository,
 * with its whole history, for the executor to clone. Only the branch's
 * objects and name are in it; no config, hooks or working tree files.
 */
// NOTE: calls on the user's repository find it with -C, so git's ownership
// check applies, and the global safe.directory entries it suggests are not
// read (GIT_CONFIG_GLOBAL is /dev/null). The node must run as the owner of
// the repository.
export async function createBundle (options: CreateBundleOptions): Promise<CreatedBundle> {
  const { git, signal } = options
  const limits = resolveLimits(options.limits)
  const repo = ['-C', path.resolve(options.repoDir)]
  const requested = options.branch ?? await currentBranch(git, options.repoDir, signal)

  // check-ref-format also expands shorthands such as @{-1} into the branch name.
  const formatted = await git.run([...repo, 'check-ref-format', '--branch', requested], { signal }).catch((err: unknown) => {
    throw new WorkspaceError('ERR_WORKSPACE_INVALID', requested, `invalid branch name ${JSON.stringify(requested)}; pass the name of a branch of ${options.repoDir}`, { cause: err })
  })
  const branch = formatted.stdout.trim()
  const ref = `refs/heads/${branch}`
  const commit = await resolveCommit(git, repo, ref, signal)
  if (commit === undefined) {
    throw new WorkspaceError('ERR_WORKSPACE_INVALID', branch, `branch ${branch} not found in repository ${options.repoDir}; pass an existing branch`)
  }

  const bundlePath = path.resolve(options.outFile)
  await mkdir(path.dirname(bundlePath), { recursive: true })
  await git.run([...repo, 'bundle', 'create', '--quiet', bundlePath, ref], { signal })
  const bytes = (await stat(bundlePath)).size
  if (bytes > limits.maxBundleBytes) {
    await unlink(bundlePath)
    throw new BundleError('ERR_BUNDLE_TOO_LARGE', bundlePath, `the bundle of ${branch} is ${bytes} bytes, over the limit of ${limits.maxBundleBytes} bytes (maxBundleBytes) that executors accept; send a smaller repository`)
  }
  return { bundlePath, ref, commit, bytes }
}

export interface FetchResultOptions {
  git: Git
  repoDir: string
  bundlePath: string
  docId: number | string
  stage: Stage
  /** The commit that was sent; the returned branch must descend from it. */
  baseCommit?: string
  limits?: Partial<GitLimits>
  signal?: AbortSignal
}

export interface FetchedResult {
  branch: string
  commit: string
}

/**
 * Requester side: checks the bundle an executor returned and creates
 * branch `cascade/{docId}/{stage}` from it in the user's repository. Only
 * objects and that one ref are written: the working tree, the index and
 * the current branch are left alone. The bundle must contain exactly that
 * branch, its objects must pass `git fsck --strict`, and its commit must
 * descend from `baseCommit`. An existing
 * branch at the same commit is accepted, so a repeated fetch is harmless;
 * one at another commit is an ERR_BRANCH_CONFLICT.
 */
export async function fetchResult (options: FetchResultOptions): Promise<FetchedResult> {
  const { git, signal } = options
  const limits = resolveLimits(options.limits)
  const repo = ['-C', path.resolve(options.repoDir)]
  const branch = cascadeBranch(options.docId, options.stage)
  const ref = `refs/heads/${branch}`
  const { file: bundle } = await checkBundleFile(options.bundlePath, limits.maxBundleBytes)

  await asBundleError(bundle, git.run([...repo, 'bundle', 'verify', bundle], { signal }))
  const heads = await listBundleHeads(git, bundle, signal)
  if (heads.length !== 1 || heads[0]?.ref !== ref) {
    throw new BundleError('ERR_BUNDLE_REFS', bundle, `bundle ${bundle} must contain only ${ref} but has ${heads.map((head) => head.ref).join(', ') || 'no refs'}; the executor returned the wrong branch`)
  }
  const commit = heads[0].oid
  const objectsDir = (await git.run([...repo, 'rev-parse', '--path-format=absolute', '--git-path', 'objects'], { signal })).stdout.trim()
  await fsckBundleAgainst(git, bundle, commit, objectsDir, signal)

  const incoming = `${INCOMING_REF_PREFIX}${randomUUID()}`
  try {
    await asBundleError(bundle, git.run([...repo, 'fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--no-recurse-submodules', bundle, `${commit}:${incoming}`], { signal }))
    await checkHistory(git, repo, bundle, commit, options.baseCommit, signal)
    await createBranch(git, repo, bundle, branch, commit, signal)
  } finally {
    await git.run([...repo, 'update-ref', '-d', incoming]).catch(() => undefined)
  }
  return { branch, commit }
}

async function currentBranch (git: Git, repoDir: string, signal?: AbortSignal): Promise<string> {
  try {
    return (await git.run(['-C', path.resolve(repoDir), 'symbolic-ref', '--quiet', '--short', 'HEAD'], { signal })).stdout.trim()
  } catch (err) {
    throw new WorkspaceError('ERR_WORKSPACE_INVALID', repoDir, `repository ${repoDir} has no current branch (detached HEAD or not a repository); pass the branch to send`, { cause: err })
  }
}

/** Returns the commit `ref` points to, or undefined when it does not exist. */
async function resolveCommit (git: Git, repo: string[], ref: string, signal?: AbortSignal): Promise<string | undefined> {
  try {
    return (await git.run([...repo, 'rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`], { signal })).stdout.trim()
  } catch (err) {
    if (err instanceof GitError && err.exitCode === 1) {
      return undefined
    }
    throw err
  }
}

async function checkHistory (git: Git, repo: string[], bundle: string, commit: string, baseCommit: string | undefined, signal?: AbortSignal): Promise<void> {
  if (baseCommit === undefined) {
    return
  }
  try {
    await git.run([...repo, 'merge-base', '--is-ancestor', baseCommit, commit], { signal })
  } catch (err) {
    if (err instanceof GitError && err.exitCode === 1) {
      throw new BundleError('ERR_BUNDLE_HISTORY', bundle, `bundle ${bundle} has commit ${commit}, which does not descend from the commit ${baseCommit} that was sent; the executor's result is rejected`, { cause: err })
    }
    throw err
  }
}

async function createBranch (git: Git, repo: string[], bundle: string, branch: string, commit: string, signal?: AbortSignal): Promise<void> {
  const ref = `refs/heads/${branch}`
  const existing = await resolveCommit(git, repo, ref, signal)
  if (existing === commit) {
    return
  }
  if (existing !== undefined) {
    throw new BundleError('ERR_BRANCH_CONFLICT', bundle, `branch ${branch} already exists at ${existing}, not at the returned ${commit}; delete it (git branch -D ${branch}) and fetch the result again`)
  }

  const worktrees = (await git.run([...repo, 'worktree', 'list', '--porcelain'], { signal })).stdout
  if (worktrees.split('\n').includes(`branch ${ref}`)) {
    throw new BundleError('ERR_BRANCH_CONFLICT', bundle, `branch ${branch} is checked out in a worktree of the repository; switch that worktree to another branch first`)
  }

  // The empty old value makes update-ref fail if the branch appeared meanwhile.
  await git.run([...repo, 'update-ref', '-m', 'emdx-node: cascade stage result', ref, commit, ''], { signal })
}
