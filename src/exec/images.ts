import path from 'node:path'
import { StageSpecError } from './errors.js'

/**
 * One image a node runs: a Docker image name, and for the bubblewrap backend
 * the folder holding the same image's root file system.
 */
export interface SandboxImage {
  name: string
  rootfs?: string
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
 * The images this executor runs. A stage names one of them or gets the
 * first; nothing else runs, whatever the requester asks for.
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
