import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { StageSpecError } from './errors.js'

/**
 * One image a node runs: a Docker image name, and for the bubblewrap backend
 * the folder holding the same image's root file system.
 */
export interface SandboxImage {
  name: string
  rootfs?: string
}

/** Name of the image `scripts/build-test-image.sh` builds. */
export const DEFAULT_IMAGE_NAME = 'emdx-sandbox-test:latest'

/**
 * Returns the image a node runs when no `--image` is given: the one the
 * repository's script builds from local files, with its root folder in the
 * package.
 *
 * TODO: ship a production agent image; this one contains only busybox and
 * the Claude Code CLI.
 */
export function defaultImage (): SandboxImage {
  const packageRoot = fileURLToPath(new URL('../..', import.meta.url))
  return { name: DEFAULT_IMAGE_NAME, rootfs: path.join(packageRoot, 'build/test-image/rootfs') }
}

/**
 * Parses an `--image` value: `NAME` (Docker only) or `NAME=ROOTFS_FOLDER`
 * (both backends). Returns undefined when the value is not of that form.
 */
export function parseImage (value: string): SandboxImage | undefined {
  const [name = '', rootfs, ...rest] = value.split('=')
  if (rest.length > 0 || !/^[a-z0-9][a-z0-9._/:-]*$/.test(name)) {
    return undefined
  }
  if (rootfs === undefined) {
    return { name }
  }
  if (!path.isAbsolute(rootfs)) {
    return undefined
  }
  return { name, rootfs }
}

/**
 * Allow-list of the images this executor runs. A stage names one of them or
 * gets the first. Nothing else runs, whatever the requester sends.
 */
export class ImageAllowList {
  readonly images: readonly SandboxImage[]

  constructor (images: SandboxImage[]) {
    if (images.length === 0) {
      throw new StageSpecError('the image allow-list is empty; pass --image NAME=ROOTFS at least once')
    }
    this.images = images
  }

  get default (): SandboxImage {
    return this.images[0] as SandboxImage
  }

  resolve (requested: string | undefined, jobId: string): SandboxImage {
    if (requested === undefined) {
      return this.default
    }
    const image = this.images.find(candidate => candidate.name === requested)
    if (image === undefined) {
      throw new StageSpecError(`job ${jobId}: image "${requested}" is not on this executor's allow-list (${this.images.map(entry => entry.name).join(', ')})`)
    }
    return image
  }
}
