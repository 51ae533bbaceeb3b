import { randomBytes } from 'node:crypto'
import { readFile, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { WebhookError } from './errors.js'

/** The key file in the data directory; its text (64 hex characters) is the HMAC key. */
export const WEBHOOK_SECRET_FILE = 'webhook-secret'
/** The shortest secret accepted, in characters. */
export const MIN_SECRET_LENGTH = 32

/**
 * Returns the webhook secret: `configured` when given, otherwise the text
 * of the key file in the data directory, created with 32 random bytes in
 * hex and mode 0600 on first use. A key file that others can read or that
 * is too short raises a WebhookError.
 */
export async function loadWebhookSecret (dataDir: string, configured?: string): Promise<string> {
  if (configured !== undefined) {
    return checkLength(configured, 'the configured webhook secret')
  }

  const file = path.join(dataDir, WEBHOOK_SECRET_FILE)
  try {
    // The wx flag fails when the file exists, so two nodes never overwrite each other's key.
    await writeFile(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new WebhookError('ERR_WEBHOOK_SECRET', `cannot create webhook key file ${file}: ${(err as Error).message}; check that the data directory is writable`, { cause: err })
    }
  }

  const info = await stat(file)
  if ((info.mode & 0o077) !== 0) {
    throw new WebhookError('ERR_WEBHOOK_SECRET', `webhook key file ${file} can be read by other users (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 ${file}`)
  }
  return checkLength((await readFile(file, 'utf8')).trim(), `webhook key file ${file}`)
}

function checkLength (secret: string, source: string): string {
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new WebhookError('ERR_WEBHOOK_SECRET', `${source} has ${secret.length} characters, fewer than the minimum of ${MIN_SECRET_LENGTH}; use a longer random secret`)
  }
  return secret
}
