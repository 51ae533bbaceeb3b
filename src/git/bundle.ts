import { lstat, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { BundleError, GitError } from './errors.js'
import type { Git } from './git.js'

/** One ref a bundle contains. */
export interface BundleHead {
  oid: string
  ref: string
}

const OBJECT_ID = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/

/**
 * Checks that the bundle is a regular file (not a link) within the size
 * limit, before git reads it. Returns its absolute path and size.
 */
export async function checkBundleFile (file: string, maxBundleBytes: number): Promise<{ file: string, bytes: number }> {
  const absolute = path.resolve(file)
  const info = await lstat(absolute).catch((err: NodeJS.ErrnoException) => {
    throw new BundleError('ERR_BUNDLE_INVALID', absolute, `cannot read bundle ${absolute}: ${err.message}`, { cause: err })
  })
  if (!info.isFile()) {
    throw new BundleError('ERR_BUNDLE_INVALID', absolute, `bundle ${absolute} is not a regular file; pass the bundle file itself, not a link or folder`)
  }
  if (info.size > maxBundleBytes) {
    throw new BundleError('ERR_BUNDLE_TOO_LARGE', absolute, `bundle ${absolute} is ${info.size} bytes, over the limit of ${maxBundleBytes} bytes (maxBundleBytes); send a smaller repository or raise the limit`)
  }
  return { file: absolute, bytes: info.size }
}

/** Returns the refs in a bundle; git reads only the bundle's header for this. */
export async function listBundleHeads (git: Git, file: string, signal?: AbortSignal): Promise<BundleHead[]> {
  const { stdout } = await asBundleError(file, git.run(['bundle', 'list-heads', file], { signal }))
  const heads: BundleHead[] = []
  for (const line of stdout.split('\n')) {
    if (line === '') {
      continue
    }
    const [oid, ref, ...rest] = line.split(' ')
    if (oid === undefined || ref === undefined || rest.length > 0 || !OBJECT_ID.test(oid)) {
      throw new BundleError('ERR_BUNDLE_INVALID', file, `bundle ${file} lists an invalid ref line ${JSON.stringify(line.slice(0, 120))}`)
    }
    heads.push({ oid, ref })
  }
  return heads
}

/**
 * Runs `git bundle verify` against the repository in `gitDir`: the bundle
 * must be well formed and every commit it builds on must be in that
 * repository.
 */
export async function verifyBundle (git: Git, gitDir: string, file: string, signal?: AbortSignal): Promise<void> {
  // Without --quiet, because with it git 2.39 also leaves out the reason for a failure.
  await asBundleError(file, git.run([`--git-dir=${gitDir}`, 'bundle', 'verify', file], { signal }))
}

/**
 * Runs `git fsck --strict` on a repository. Git 2.39 runs no fsck checks
 * when it fetches from a bundle, even with `transfer.fsckObjects` set, so
 * this is what rejects tree entries such as `.git` or `..`, malformed
 * objects and hostile `.gitmodules` files. With `localOnly`, objects
 * reached through alternates are not checked.
 */
export async function fsckRepository (git: Git, gitDir: string, bundle: string, options: { localOnly?: boolean, signal?: AbortSignal } = {}): Promise<void> {
  const args = [`--git-dir=${gitDir}`, 'fsck', '--strict', '--no-dangling', '--no-progress']
  if (options.localOnly === true) {
    args.push('--no-full')
  }
  try {
    await git.run(args, { signal: options.signal })
  } catch (err) {
    if (err instanceof GitError && err.code === 'ERR_GIT_FAILED') {
      throw new BundleError('ERR_BUNDLE_INVALID', bundle, `bundle ${bundle} has objects that fail git fsck: ${err.stderr === '' ? 'no details given' : err.stderr}`, { cause: err })
    }
    throw err
  }
}

/**
 * Fetches one commit of a bundle into a scratch repository that borrows
 * `objectsDir` through alternates, and runs fsck on just the bundle's
 * objects there. The scratch repository is removed afterwards.
 */
export async function fsckBundleAgainst (git: Git, bundle: string, commit: string, objectsDir: string, signal?: AbortSignal): Promise<void> {
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'emdx-bundle-check-'))
  try {
    await git.run(['init', '--quiet', '--bare', '--template=', scratch], { signal })
    await writeFile(path.join(scratch, 'objects', 'info', 'alternates'), `${objectsDir}\n`)
    await asBundleError(bundle, git.run([`--git-dir=${scratch}`, 'fetch', '--quiet', '--no-tags', '--no-write-fetch-head', bundle, `${commit}:refs/heads/check`], { signal }))
    await fsckRepository(git, scratch, bundle, { localOnly: true, signal })
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}

/** Turns a failed git call on a bundle into a BundleError that names the file and git's reason. */
export async function asBundleError<T> (file: string, call: Promise<T>): Promise<T> {
  try {
    return await call
  } catch (err) {
    if (err instanceof GitError && err.code === 'ERR_GIT_FAILED') {
      throw new BundleError('ERR_BUNDLE_INVALID', file, `bundle ${file} was rejected by git ${err.command}: ${err.stderr === '' ? 'no reason given' : err.stderr}`, { cause: err })
    }
    throw err
  }
}
