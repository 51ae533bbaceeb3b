import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { WebhookError } from '../../src/webhooks/errors.js'
import { WEBHOOK_SECRET_FILE, loadWebhookSecret } from '../../src/webhooks/secret.js'
import { makeTempDir } from '../support/temp.js'

describe('loadWebhookSecret', () => {
  it('creates a private key file', async () => {
    const dataDir = await makeTempDir()

    const secret = await loadWebhookSecret(dataDir)

    const file = path.join(dataDir, WEBHOOK_SECRET_FILE)
    expect(secret).toMatch(/^[0-9a-f]{64}$/)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect((await readFile(file, 'utf8')).trim()).toBe(secret)
  })

  it('reuses the key file', async () => {
    const dataDir = await makeTempDir()

    const first = await loadWebhookSecret(dataDir)
    const second = await loadWebhookSecret(dataDir)

    expect(second).toBe(first)
  })

  it('rejects a key file others read', async () => {
    const dataDir = await makeTempDir()
    await loadWebhookSecret(dataDir)
    const file = path.join(dataDir, WEBHOOK_SECRET_FILE)
    await chmod(file, 0o644)

    const err = await loadWebhookSecret(dataDir).catch((caught: unknown) => caught)

    expect(err).toBeInstanceOf(WebhookError)
    expect((err as WebhookError).message).toContain(`run chmod 600 ${file}`)
  })

  it('rejects a short key file', async () => {
    const dataDir = await makeTempDir()
    await writeFile(path.join(dataDir, WEBHOOK_SECRET_FILE), 'short\n', { mode: 0o600 })

    await expect(loadWebhookSecret(dataDir)).rejects.toThrow(/has 5 characters, fewer than the minimum of 32/)
  })

  it('prefers a configured secret', async () => {
    const dataDir = await makeTempDir()
    const configured = 'a-configured-secret-of-enough-length-0123'

    expect(await loadWebhookSecret(dataDir, configured)).toBe(configured)
    await expect(stat(path.join(dataDir, WEBHOOK_SECRET_FILE))).rejects.toThrow(/ENOENT/)
    await expect(loadWebhookSecret(dataDir, 'too short')).rejects.toThrow(/the configured webhook secret has 9 characters/)
  })
})
