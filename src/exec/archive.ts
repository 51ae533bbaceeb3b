import { createReadStream } from 'node:fs'
import { chown, mkdir, open } from 'node:fs/promises'
import { constants } from 'node:fs'
import path from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import tar from 'tar-stream'
import { StageInputError } from './errors.js'
import type { Readable } from 'node:stream'

/** Limits on a stage's input archive. */
export interface ArchiveLimits {
  maxEntries: number
  /** Sum of the sizes of all files once extracted, in bytes. */
  maxTotalBytes: number
  /** Size of the archive file itself, in bytes. */
  maxArchiveBytes: number
}

export const DEFAULT_ARCHIVE_LIMITS: ArchiveLimits = {
  maxEntries: 10_000,
  maxTotalBytes: 512 * 1024 ** 2,
  maxArchiveBytes: 256 * 1024 ** 2
}

/** Tar spends at least one 512-byte header per entry; longer names take more. */
const HEADER_ALLOWANCE_BYTES = 4096

interface CheckedEntry {
  name: string
  type: 'file' | 'directory'
  mode: number
}

/**
 * Extracts a tar or tar.gz archive into `target` in two passes. The first
 * reads the whole archive and rejects it before anything is written when it
 * breaks a limit or contains an entry other than a plain file or folder
 * inside the target (links, devices, absolute paths, `..`). The second pass
 * writes, and never follows or replaces anything that exists.
 */
/** Owner given to every extracted file and folder, so the sandbox user can change them. */
export interface ArchiveOwner {
  uid: number
  gid: number
}

export async function extractArchive (archivePath: string, target: string, owner: ArchiveOwner, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS): Promise<number> {
  const entries = await checkArchive(archivePath, limits)

  let index = 0
  await readArchive(archivePath, limits, async (header, stream) => {
    const entry = entries[index++]
    if (entry === undefined || entry.name !== normalizeName(header.name)) {
      throw new StageInputError('changed', `input archive ${archivePath} changed while it was extracted; send it again`)
    }
    await writeEntry(target, entry, stream, owner)
  })
  return entries.length
}

async function checkArchive (archivePath: string, limits: ArchiveLimits): Promise<CheckedEntry[]> {
  const entries: CheckedEntry[] = []
  let totalBytes = 0

  await readArchive(archivePath, limits, async (header, stream) => {
    if (entries.length >= limits.maxEntries) {
      throw new StageInputError('maxEntries', `input archive has more than ${limits.maxEntries} entries, the limit; send fewer files`)
    }
    const entry = checkEntry(header)
    for await (const chunk of stream) {
      totalBytes += (chunk as Buffer).length
      if (totalBytes > limits.maxTotalBytes) {
        throw new StageInputError('maxTotalBytes', `input archive expands to more than ${limits.maxTotalBytes} bytes, the limit for its extracted files; send less`)
      }
    }
    entries.push(entry)
  })
  return entries
}

function checkEntry (header: tar.Header): CheckedEntry {
  const name = header.name
  if (header.type !== 'file' && header.type !== 'directory') {
    throw new StageInputError('entryType', `input archive entry "${name}" is a ${header.type ?? 'unknown type'}; only plain files and folders are accepted`)
  }
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) {
    throw new StageInputError('absolutePath', `input archive entry "${name}" has an absolute path; paths must be relative to the workspace`)
  }
  if (name.split(/[/\\]/).includes('..')) {
    throw new StageInputError('parentPath', `input archive entry "${name}" contains "..", which could point outside the workspace`)
  }
  if (name.includes('\0')) {
    throw new StageInputError('invalidName', 'input archive has an entry name with a NUL character')
  }
  return { name: normalizeName(name), type: header.type, mode: (header.mode ?? 0o644) & 0o755 }
}

function normalizeName (name: string): string {
  return path.posix.normalize(name).replace(/\/+$/, '')
}

type EntryHandler = (header: tar.Header, stream: Readable) => Promise<void>

async function readArchive (archivePath: string, limits: ArchiveLimits, onEntry: EntryHandler): Promise<void> {
  const file = await open(archivePath, 'r')
  let compressed: boolean
  try {
    const { size } = await file.stat()
    if (size > limits.maxArchiveBytes) {
      throw new StageInputError('maxArchiveBytes', `input archive is ${size} bytes, more than the limit of ${limits.maxArchiveBytes}`)
    }
    const magic = Buffer.alloc(2)
    await file.read(magic, 0, 2, 0)
    compressed = magic[0] === 0x1f && magic[1] === 0x8b
  } finally {
    await file.close()
  }

  const extract = tar.extract()
  const consume = (async () => {
    for await (const entry of extract) {
      await onEntry(entry.header, entry as unknown as Readable)
    }
  })()

  // Counts decompressed bytes, so a small gzip that expands to gigabytes is
  // stopped at the limit rather than read to its end.
  const maxStreamBytes = limits.maxTotalBytes + (limits.maxEntries + 2) * HEADER_ALLOWANCE_BYTES
  let streamed = 0
  const counter = new Transform({
    transform (chunk: Buffer, _encoding, callback) {
      streamed += chunk.length
      if (streamed > maxStreamBytes) {
        callback(new StageInputError('maxTotalBytes', `input archive expands to more than ${limits.maxTotalBytes} bytes, the limit for its extracted files; send less`))
        return
      }
      callback(null, chunk)
    }
  })

  const source = createReadStream(archivePath)
  const stages = compressed ? [source, createGunzip(), counter, extract] : [source, counter, extract]
  const results = await Promise.allSettled([pipeline(stages as unknown as [Readable, ...NodeJS.WritableStream[]]), consume])
  const inputError = results.map(result => result.status === 'rejected' ? result.reason as unknown : undefined).find(reason => reason instanceof StageInputError)
  if (inputError !== undefined) {
    throw inputError
  }
  for (const result of results) {
    if (result.status === 'rejected') {
      throw new StageInputError('invalidArchive', `input archive is not a valid tar or tar.gz file: ${(result.reason as Error).message}`, { cause: result.reason })
    }
  }
}

async function writeEntry (target: string, entry: CheckedEntry, stream: Readable, owner: ArchiveOwner): Promise<void> {
  const destination = path.join(target, entry.name)
  if (entry.type === 'directory') {
    await makeFolders(target, entry.name, owner)
    stream.resume()
    return
  }

  await makeFolders(target, path.posix.dirname(entry.name), owner)
  // O_EXCL and O_NOFOLLOW: an entry never replaces or writes through
  // anything that exists, such as a file of the same name earlier in the archive.
  const handle = await open(destination, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, entry.mode | 0o600)
  try {
    for await (const chunk of stream) {
      await handle.write(chunk as Buffer)
    }
    await handle.chown(owner.uid, owner.gid)
  } finally {
    await handle.close()
  }
}

/** Creates each missing folder of `relative` below `target`, owned by `owner`. */
async function makeFolders (target: string, relative: string, owner: ArchiveOwner): Promise<void> {
  let current = target
  for (const part of relative.split('/')) {
    if (part === '' || part === '.') {
      continue
    }
    current = path.join(current, part)
    const created = await mkdir(current, { mode: 0o755 }).then(() => true, (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') {
        throw err
      }
      return false
    })
    if (created) {
      await chown(current, owner.uid, owner.gid)
    }
  }
}
