import { randomBytes } from 'node:crypto'
import { chmod, link, open, readFile, stat, unlink } from 'node:fs/promises'
import path from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import nacl from 'tweetnacl'
import { IdentityError } from './errors.js'
import type { Ed25519PrivateKey, PrivateKey } from '@libp2p/interface'

export const IDENTITY_FILE_NAME = 'identity.key'
export const ENCRYPTION_KEY_FILE_NAME = 'encryption.key'

/** The X25519 key pair that stage payloads sent to this node are sealed to. */
export interface EncryptionKeyPair {
  publicKey: Uint8Array
  secretKey: Uint8Array
}

export interface LoadedIdentity {
  privateKey: Ed25519PrivateKey
  file: string
  created: boolean
}

/**
 * Loads the node's Ed25519 key from the data directory, or creates it (mode
 * 0600) when the file does not exist. An existing file is never replaced: a
 * file that cannot be read, is readable by others or is not a key is an error,
 * because replacing it would silently give the node a new peer id and abandon
 * its credits.
 */
export async function loadOrCreateIdentity (dataDir: string): Promise<LoadedIdentity> {
  const file = path.join(dataDir, IDENTITY_FILE_NAME)

  const existing = await readKeyFile(file)
  if (existing !== undefined) {
    return { privateKey: decodeKey(file, existing), file, created: false }
  }

  const privateKey = await generateKeyPair('Ed25519')
  const created = await writeKeyFileOnce(file, privateKeyToProtobuf(privateKey))
  if (!created) {
    // Another process created the key between our read and our write: use its key.
    const raced = await readKeyFile(file)
    if (raced === undefined) {
      throw new IdentityError(file, `identity key ${file} disappeared while it was being created; start the node again`)
    }
    return { privateKey: decodeKey(file, raced), file, created: false }
  }
  return { privateKey, file, created: true }
}

/**
 * Loads the node's X25519 encryption key, or creates it (mode 0600). The
 * same rules as for the identity key apply: an existing file is never
 * replaced. Its public half is published, signed, in the capacity record.
 */
export async function loadOrCreateEncryptionKey (dataDir: string): Promise<EncryptionKeyPair> {
  const file = path.join(dataDir, ENCRYPTION_KEY_FILE_NAME)

  const existing = await readKeyFile(file)
  if (existing !== undefined) {
    return decodeEncryptionKey(file, existing)
  }

  const created = await writeKeyFileOnce(file, nacl.box.keyPair().secretKey)
  const stored = await readKeyFile(file)
  if (stored === undefined) {
    throw new IdentityError(file, `encryption key ${file} disappeared while it was being ${created ? 'created' : 'read'}; start the node again`)
  }
  return decodeEncryptionKey(file, stored)
}

function decodeEncryptionKey (file: string, bytes: Uint8Array): EncryptionKeyPair {
  if (bytes.byteLength !== nacl.box.secretKeyLength) {
    throw new IdentityError(file, `encryption key ${file} is corrupt (${bytes.byteLength} bytes, expected ${nacl.box.secretKeyLength}); restore it from a backup, or move it away to create a new one`)
  }
  return nacl.box.keyPair.fromSecretKey(new Uint8Array(bytes))
}

async function readKeyFile (file: string): Promise<Uint8Array | undefined> {
  let mode: number
  try {
    mode = (await stat(file)).mode
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return undefined
    }
    throw new IdentityError(file, `cannot read key file ${file}: ${(err as Error).message}; fix the permissions of the data directory`, { cause: err })
  }

  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0')
    throw new IdentityError(file, `key file ${file} has permissions ${octal}, so other users may read it; run chmod 600 ${file} and check that nobody copied it`)
  }

  try {
    return await readFile(file)
  } catch (err) {
    throw new IdentityError(file, `cannot read key file ${file}: ${(err as Error).message}; check that it belongs to the user running emdx-node`, { cause: err })
  }
}

function decodeKey (file: string, bytes: Uint8Array): Ed25519PrivateKey {
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new IdentityError(file, `identity key ${file} is corrupt (${(err as Error).message}); restore it from a backup, or move it away to start with a new peer id and no credits`, { cause: err })
  }

  if (key.type !== 'Ed25519') {
    throw new IdentityError(file, `identity key ${file} is a ${key.type} key, but emdx-node needs Ed25519; move it away to create a new one`)
  }
  return key
}

/**
 * Writes the key to a private temporary file, flushes it, then links it into
 * place: the final name either does not exist or holds a complete key, and an
 * existing file is never overwritten. Returns false when the file already exists.
 */
async function writeKeyFileOnce (file: string, bytes: Uint8Array): Promise<boolean> {
  const temporary = `${file}.${randomBytes(6).toString('hex')}.tmp`
  const handle = await open(temporary, 'wx', 0o600)
  try {
    await handle.writeFile(bytes)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await chmod(temporary, 0o600)

  try {
    await link(temporary, file)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      return false
    }
    throw new IdentityError(file, `cannot write key file ${file}: ${(err as Error).message}`, { cause: err })
  } finally {
    await unlink(temporary)
  }
}
