import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { chromium } from 'playwright-core'
import { it } from 'vitest'
import { repoRoot, requireSandbox } from '../exec/support.js'
import type { BrowserContext } from 'playwright-core'

/** Debian's Chromium, because `playwright install` cannot download a browser on machines without internet access. */
export const CHROMIUM_PATH = process.env.EMDX_CHROMIUM ?? '/usr/bin/chromium'
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** Returns the folder for screenshots and other files for people to look at: EMDX_TEST_OUTPUT, or test-output/. */
export async function testOutputDir (): Promise<string> {
  const dir = path.resolve(process.env.EMDX_TEST_OUTPUT ?? path.join(repoRoot, 'test-output'))
  await mkdir(dir, { recursive: true })
  return dir
}

let pageBuilt: Promise<unknown> | undefined

/**
 * Compiles the dashboard page into dist/browser once per test process, as
 * `npm run build` does, so the page under test is the current source.
 */
export async function ensurePageBuilt (): Promise<void> {
  const run = promisify(execFile)
  pageBuilt ??= (async () => {
    await run(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.page.json'], { cwd: repoRoot })
    await run(process.execPath, ['scripts/copy-page-files.mjs'], { cwd: repoRoot })
  })()
  await pageBuilt
}

export interface Chromium {
  context: BrowserContext
  close: () => Promise<void>
}

/** Starts headless Chromium with a fresh profile, removed again by `close`. */
export async function launchChromium (): Promise<Chromium> {
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-chromium-'))
  try {
    const context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true, timeout: 30_000 })
    return {
      context,
      close: async () => {
        await context.close()
        await rm(userDataDir, { recursive: true, force: true })
      }
    }
  } catch (err) {
    await rm(userDataDir, { recursive: true, force: true })
    throw err
  }
}

/** Why Chromium cannot run here, or undefined when it starts. */
export async function missingChromium (): Promise<string | undefined> {
  if (!existsSync(CHROMIUM_PATH)) {
    return `Chromium is not installed at ${CHROMIUM_PATH} (apt-get install chromium, or set EMDX_CHROMIUM)`
  }
  try {
    const browser = await launchChromium()
    await browser.close()
    return undefined
  } catch (err) {
    return `Chromium at ${CHROMIUM_PATH} does not start: ${(err as Error).message.split('\n')[0] ?? ''}`
  }
}

/**
 * Registers a placeholder for browser tests that cannot run here: a skipped
 * test naming what is missing, or a failing one when EMDX_REQUIRE_SANDBOX=1.
 */
export function reportMissingChromium (missing: string): void {
  if (requireSandbox) {
    it('Chromium is available', () => {
      throw new Error(`EMDX_REQUIRE_SANDBOX=1 but the browser tests cannot run: ${missing}`)
    })
  } else {
    it.skip(`browser tests skipped: ${missing}`, () => {})
  }
}
