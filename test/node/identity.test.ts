import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { IdentityError } from '../../src/node/errors.js'
import { IDENTITY_FILE_NAME, loadOrCreateIdentity } from '../../src/node/identity.js'
import { makeTempDir } from '../support/temp.js'

describe('identity key', () => {
  it('is created with mode 0600', async () => {
    const dir = await makeTempDir()

    const identity = await loadOrCreateIdentity(dir)

    expect(identity.created).toBe(true)
    expect(identity.privateKey.type).toBe('Ed25519')
    expect((await stat(identity.file)).mode & 0o777).toBe(0o600)
  })

  it('is reused on the next load', async () => {
    const dir = await makeTempDir()
    const first = await loadOrCreateIdentity(dir)

    const second = await loadOrCreateIdentity(dir)

    expect(second.created).toBe(false)
    expect(second.privateKey.publicKey.toString()).toBe(first.privateKey.publicKey.toString())
  })

  it('rejects a corrupt file and leaves it untouched', async () => {
    const dir = await makeTempDir()
    const file = path.join(dir, IDENTITY_FILE_NAME)
    const garbage = Buffer.from('not a protobuf key at all')
    await writeFile(file, garbage, { mode: 0o600 })

    const error = await loadOrCreateIdentity(dir).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(IdentityError)
    expect((error as IdentityError).message).toContain(file)
    expect((error as IdentityError).message).toContain('corrupt')
    expect(await readFile(file)).toEqual(garbage)
  })

  it('rejects an empty file', async () => {
    const dir = await makeTempDir()
    const file = path.join(dir, IDENTITY_FILE_NAME)
    await writeFile(file, '', { mode: 0o600 })

    await expect(loadOrCreateIdentity(dir)).rejects.toThrow(IdentityError)
  })

  it('rejects a file others can read', async () => {
    const dir = await makeTempDir()
    const { file } = await loadOrCreateIdentity(dir)
    const before = await readFile(file)
    await chmod(file, 0o644)

    const error = await loadOrCreateIdentity(dir).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(IdentityError)
    expect((error as IdentityError).message).toContain(`chmod 600 ${file}`)
    expect(await readFile(file)).toEqual(before)
  })

  it('rejects a folder in place of the file', async () => {
    const dir = await makeTempDir()
    const file = path.join(dir, IDENTITY_FILE_NAME)
    await mkdir(file, { mode: 0o700 })

    const error = await loadOrCreateIdentity(dir).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(IdentityError)
    expect((error as IdentityError).message).toContain(file)
  })
})
