import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import Docker from 'dockerode'
import { pino } from 'pino'
import { it } from 'vitest'
import { createExecutor } from '../../src/exec/create.js'
import type { ExecutorSettings, CreatedExecutor } from '../../src/exec/create.js'
import type { StageLimits } from '../../src/exec/types.js'
import type { Logger } from '../../src/node/logger.js'

const run = promisify(execFile)

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
export const TEST_IMAGE = process.env.EMDX_TEST_IMAGE ?? 'emdx-sandbox-test:latest'
export const TEST_ROOTFS = process.env.EMDX_TEST_ROOTFS ?? path.join(repoRoot, 'build/test-image/rootfs')
export const requireSandbox = process.env.EMDX_REQUIRE_SANDBOX === '1'

export type BackendName = 'docker' | 'bwrap'

/** Small limits, so that hostile cases end in seconds. */
export const TEST_LIMITS: StageLimits = {
  timeoutMs: 20_000,
  memoryBytes: 256 * 1024 ** 2,
  cpus: 1,
  pids: 64,
  outputBytes: 64 * 1024,
  workspaceBytes: 16 * 1024 ** 2,
  fileSizeBytes: 64 * 1024 ** 2,
  openFiles: 256,
  tmpBytes: 16 * 1024 ** 2
}

/** Why a backend cannot run here, or undefined when it can. */
export async function missingBackend (backend: BackendName): Promise<string | undefined> {
  if (!existsSync(path.join(TEST_ROOTFS, 'bin/busybox'))) {
    return `the test image is not built (${TEST_ROOTFS} is missing); run scripts/build-test-image.sh`
  }
  if (backend === 'bwrap') {
    try {
      await run('bwrap', ['--version'])
      return undefined
    } catch {
      return 'bubblewrap is not installed (apt-get install bubblewrap)'
    }
  }
  const docker = new Docker()
  try {
    await docker.ping()
  } catch (err) {
    return `no Docker daemon responds at ${process.env.DOCKER_HOST ?? 'the default socket'} (${(err as Error).message}); start dockerd and set DOCKER_HOST`
  }
  try {
    await docker.getImage(TEST_IMAGE).inspect()
  } catch {
    return `Docker image ${TEST_IMAGE} is missing; run scripts/build-test-image.sh`
  }
  return undefined
}

/**
 * Registers a placeholder for a backend that cannot run here: a skipped test
 * naming what is missing, or a failing one when EMDX_REQUIRE_SANDBOX=1.
 */
export function reportMissing (backend: BackendName, missing: string): void {
  if (requireSandbox) {
    it(`${backend} backend is available`, () => {
      throw new Error(`EMDX_REQUIRE_SANDBOX=1 but the ${backend} backend cannot run: ${missing}`)
    })
  } else {
    it.skip(`${backend} backend skipped: ${missing}`, () => {})
  }
}

/** Creates a logger that keeps every line, for tests that look for secrets in logs. */
export function capturingLogger (): { logger: Logger, lines: string[] } {
  const lines: string[] = []
  const destination = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString('utf8'))
      callback()
    }
  })
  return { logger: pino({ level: 'debug' }, destination), lines }
}

export interface TestExecutor extends CreatedExecutor {
  stateDir: string
  cleanup: () => Promise<void>
}

/** Creates an executor of one backend with test limits in a temporary state folder. */
export async function testExecutor (backend: BackendName, overrides: Partial<ExecutorSettings> = {}): Promise<TestExecutor> {
  const stateDir = overrides.stateDir ?? await mkdtemp(path.join(os.tmpdir(), `emdx-exec-${backend}-`))
  // bubblewrap runs as the host user `nobody` when the tests run as root, and must reach its workspace.
  await chmod(stateDir, 0o711)
  const created = await createExecutor({
    nodeId: `test-${path.basename(stateDir).slice(-6)}`,
    stateDir,
    runtime: backend === 'bwrap' ? 'bwrap' : 'runc',
    images: [{ name: TEST_IMAGE, rootfs: TEST_ROOTFS }],
    agentEgress: [],
    limits: TEST_LIMITS,
    warmPoolSize: 0,
    logger: pino({ level: 'silent' }),
    ...overrides
  })
  if (created.executor === undefined) {
    if (overrides.stateDir === undefined) {
      await rm(stateDir, { recursive: true, force: true })
    }
    throw new Error(`no ${backend} executor: ${created.info.reason ?? 'unknown reason'}`)
  }
  return {
    ...created,
    stateDir,
    cleanup: async () => {
      await created.executor?.close()
      await rm(stateDir, { recursive: true, force: true })
    }
  }
}

/** Containers of any node's jobs that are still there. */
export async function containersWithLabel (label: string): Promise<number> {
  const docker = new Docker()
  const containers = await docker.listContainers({ all: true, filters: { label: [label] } })
  return containers.length
}

/** Host processes whose command line contains `text`. */
export async function processesMatching (text: string): Promise<number> {
  const { stdout } = await run('ps', ['-eo', 'args'])
  return stdout.split('\n').filter(line => line.includes(text) && !line.includes('ps -eo')).length
}
