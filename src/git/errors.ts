import { EmdxError } from '../node/errors.js'

/** A git command failed, timed out or was cancelled. */
export class GitError extends EmdxError {
  /** The git subcommand, such as `fetch`. */
  readonly command: string
  readonly exitCode: number | null
  /** The end of git's standard error, at most a few hundred characters. */
  readonly stderr: string

  constructor (code: 'ERR_GIT_FAILED' | 'ERR_GIT_TIMEOUT' | 'ERR_GIT_OUTPUT_LIMIT', command: string, exitCode: number | null, stderr: string, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.command = command
    this.exitCode = exitCode
    this.stderr = stderr
  }
}

export type BundleErrorCode =
  /** The bundle file is larger than the limit. */
  | 'ERR_BUNDLE_TOO_LARGE'
  /** Not a bundle, a bundle that git cannot verify, or objects that fail git's fsck checks. */
  | 'ERR_BUNDLE_INVALID'
  /** The bundle's refs are not the ones expected. */
  | 'ERR_BUNDLE_REFS'
  /** The tree to check out has more files or bytes than the limits allow. */
  | 'ERR_CHECKOUT_TOO_LARGE'
  /** The returned branch does not descend from the commit that was sent. */
  | 'ERR_BUNDLE_HISTORY'
  /** The target branch exists with another commit, or is checked out. */
  | 'ERR_BRANCH_CONFLICT'

/** A bundle, or the tree in it, that emdx-node does not accept. Nothing was written to a working tree. */
export class BundleError extends EmdxError {
  readonly file: string

  constructor (code: BundleErrorCode, file: string, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.file = file
  }
}

export type WorkspaceErrorCode =
  /** A symbolic link whose target is absolute or leaves the workspace. */
  | 'ERR_WORKSPACE_SYMLINK'
  /** A file with more than one hard link. */
  | 'ERR_WORKSPACE_HARDLINK'
  /** A FIFO, socket or device file. */
  | 'ERR_WORKSPACE_SPECIAL_FILE'
  /** A file or folder named `.git`, which would make git treat a folder as another repository. */
  | 'ERR_WORKSPACE_GIT_DIR'
  /** More files or bytes than the limits allow. */
  | 'ERR_WORKSPACE_TOO_LARGE'
  /** The workspace or git folder cannot be used as given. */
  | 'ERR_WORKSPACE_INVALID'

/** A workspace whose contents emdx-node does not commit. `path` is the offending entry, relative to the workspace. */
export class WorkspaceError extends EmdxError {
  readonly path: string

  constructor (code: WorkspaceErrorCode, entry: string, message: string, options?: ErrorOptions) {
    super(code, message, options)
    this.path = entry
  }
}
