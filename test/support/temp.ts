import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach } from 'vitest'

const created: string[] = []

/** A fresh folder under the system temp dir, removed after the test. */
export async function makeTempDir (prefix = 'emdx-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix))
  created.push(dir)
  return dir
}

afterEach(async () => {
  while (created.length > 0) {
    const dir = created.pop() as string
    await rm(dir, { recursive: true, force: true })
  }
})
