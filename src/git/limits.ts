/**
 * Limits on git data from other users. The defaults match the stage
 * protocol's default payload limit of 256 MiB for a bundle.
 */
export interface GitLimits {
  /** The largest bundle accepted or produced, in bytes. */
  maxBundleBytes: number
  /** The maximum number of files a checkout or a workspace may have. */
  maxFiles: number
  /** The maximum bytes of file content a checkout or a workspace may have. */
  maxContentBytes: number
}

export const DEFAULT_GIT_LIMITS: GitLimits = {
  maxBundleBytes: 256 * 1024 * 1024,
  maxFiles: 100_000,
  // NOTE: an estimate of what an agent's workspace needs, not a measured figure.
  maxContentBytes: 1024 * 1024 * 1024
}

export function resolveLimits (limits: Partial<GitLimits> = {}): GitLimits {
  return { ...DEFAULT_GIT_LIMITS, ...limits }
}
