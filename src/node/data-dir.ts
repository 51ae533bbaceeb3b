import { constants } from 'node:fs'
import { access, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Level } from 'level'
import { DataDirError, DataDirLockedError } from './errors.js'

/** The one LevelDB of a data directory; each component uses a sublevel of it. */
export type RootDatabase = Level<string, Uint8Array>

const PID_FILE = 'node.pid'
const DATABASE_DIR = 'db'

/**
 * Creates the data directory (mode 0700) when it is missing and checks that
 * this process can use it.
 */
export async function prepareDataDir (dataDir: string): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new DataDirError(dataDir, `cannot create data directory ${dataDir}: ${(err as Error).message}; pass --data-dir with a folder you can write`, { cause: err })
  }

  const info = await stat(dataDir)
  if (!info.isDirectory()) {
    throw new DataDirError(dataDir, `data directory ${dataDir} is not a folder; pass --data-dir with a folder`)
  }
  try {
    await access(dataDir, constants.R_OK | constants.W_OK | constants.X_OK)
  } catch (err) {
    throw new DataDirError(dataDir, `data directory ${dataDir} is not readable and writable by this user; fix its owner or permissions (chmod 700 ${dataDir})`, { cause: err })
  }
}

/**
 * Opens the data directory's LevelDB. LevelDB holds an operating-system lock
 * on it while it is open, which is what stops a second node from using the
 * same data directory: the lock is released even when a node is killed, so no
 * stale lock file can block a restart.
 */
export async function openDatabase (dataDir: string): Promise<RootDatabase> {
  const location = path.join(dataDir, DATABASE_DIR)
  const db = new Level<string, Uint8Array>(location, { keyEncoding: 'utf8', valueEncoding: 'view' })

  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') {
      const pid = await readPid(dataDir)
      const owner = pid === undefined ? 'another emdx-node' : `another emdx-node (pid ${pid})`
      throw new DataDirLockedError(`data directory ${dataDir} is in use by ${owner}; stop that node first, or pass --data-dir to run a second node`, { cause: err })
    }
    if (cause?.code === 'LEVEL_CORRUPTION') {
      throw new DataDirError(location, `database ${location} is corrupt; restore it from a backup (it holds the peer store, DHT records and the credit ledger)`, { cause: err })
    }
    throw new DataDirError(location, `cannot open database ${location}: ${(err as Error).message}`, { cause: err })
  }

  await writeFile(path.join(dataDir, PID_FILE), `${process.pid}\n`, { mode: 0o644 })
  return db
}

/** Closes the database and removes the pid file that named this process. */
export async function closeDatabase (dataDir: string, db: RootDatabase): Promise<void> {
  await db.close()
  await rm(path.join(dataDir, PID_FILE), { force: true })
}

async function readPid (dataDir: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt(await readFile(path.join(dataDir, PID_FILE), 'utf8'), 10)
    return Number.isInteger(pid) ? pid : undefined
  } catch {
    return undefined
  }
}

/** A part of the root database with text keys and text values. */
export function textSublevel (database: RootDatabase, name: string) {
  return database.sublevel<string, string>(name, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
}

export type TextSublevel = ReturnType<typeof textSublevel>

/** A part of the root database with text keys and binary values. */
export function binarySublevel (database: RootDatabase, name: string) {
  return database.sublevel<string, Uint8Array>(name, { keyEncoding: 'utf8', valueEncoding: 'view' })
}

export type BinarySublevel = ReturnType<typeof binarySublevel>
