import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { containersWithLabel, missingBackend, processesMatching, repoRoot, reportMissing, TEST_IMAGE, TEST_ROOTFS, testExecutor } from './support.js'
import type { BackendName } from './support.js'

const run = promisify(execFile)
const backends: BackendName[] = ['docker', 'bwrap']

/**
 * The fixture runs the compiled executor, as `emdx-node start` does; build
 * it when a source file is newer than the build (CI builds before testing).
 */
async function buildWhenStale (): Promise<void> {
  const built = path.join(repoRoot, 'dist/exec/create.js')
  const builtAt = existsSync(built) ? (await stat(built)).mtimeMs : 0
  const sources = await readdir(path.join(repoRoot, 'src'), { recursive: true })
  for (const source of sources) {
    if ((await stat(path.join(repoRoot, 'src', source))).mtimeMs > builtAt) {
      await run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repoRoot })
      return
    }
  }
}

async function waitFor (condition: () => Promise<boolean>): Promise<void> {
  for (let attempt = 0; attempt < 50 && !await condition(); attempt++) {
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/**
 * Starts the fixture node, waits until its stages run, and kills it with
 * SIGKILL. Returns how many of the stages' processes ran just before.
 */
async function killNodeMidStage (backend: BackendName, stateDir: string, nodeId: string, sleepSeconds: string): Promise<number> {
  const fixture = path.join(repoRoot, 'test/exec/fixtures/orphan-node.mjs')
  const child = spawn(process.execPath, [fixture, backend, stateDir, nodeId, TEST_IMAGE, TEST_ROOTFS, sleepSeconds], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString('utf8') })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString('utf8') })
  const exited = new Promise(resolve => child.once('exit', resolve))
  for (let waited = 0; !output.includes('running'); waited += 100) {
    if (waited > 30_000 || child.exitCode !== null) {
      child.kill('SIGKILL')
      throw new Error(`the fixture node did not start its stages: ${output}`)
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  const running = await processesMatching(`sleep ${sleepSeconds}`)
  child.kill('SIGKILL')
  await exited
  return running
}

for (const backend of backends) {
  const missing = await missingBackend(backend)
  describe(`S14 leftovers after SIGKILL, ${backend} backend`, () => {
    if (missing !== undefined) {
      reportMissing(backend, missing)
      return
    }

    beforeAll(async () => { await buildWhenStale() }, 120_000)

    let stateDir: string
    beforeAll(async () => {
      stateDir = await mkdtemp(path.join(os.tmpdir(), `emdx-s14-${backend}-`))
      await chmod(stateDir, 0o711)
    })
    afterAll(async () => { await rm(stateDir, { recursive: true, force: true }) })

    it('S14 restart removes leftovers of a killed node', async () => {
      const nodeId = `s14-${backend}-${path.basename(stateDir).slice(-6)}`
      // A number no other process on the machine is likely to sleep for.
      const sleepSeconds = String(800_000 + Math.floor(Math.random() * 99_999))
      const stageProcess = `sleep ${sleepSeconds}`
      const running = await killNodeMidStage(backend, stateDir, nodeId, sleepSeconds)
      expect(running).toBe(3)
      const workspaces = path.join(stateDir, 'workspaces')
      expect((await readdir(workspaces)).length).toBeGreaterThanOrEqual(2)
      if (backend === 'docker') {
        // NOTE: containers outlive the node until it restarts; nothing
        // enforces their deadline in between.
        expect(await containersWithLabel(`emdx.node=${nodeId}`)).toBeGreaterThanOrEqual(2)
      } else {
        // --die-with-parent: bubblewrap dies with the node, and its sandboxes with it.
        await waitFor(async () => await processesMatching(stageProcess) === 0)
        expect(await processesMatching(stageProcess)).toBe(0)
      }

      const restarted = await testExecutor(backend, { nodeId, stateDir, warmPoolSize: 0 })
      try {
        if (backend === 'docker') {
          expect(await containersWithLabel(`emdx.node=${nodeId}`)).toBe(0)
        }
        expect(await processesMatching(stageProcess)).toBe(0)
        expect(await readdir(workspaces)).toEqual([])
        expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(stateDir)
        const cgroupParent = `/sys/fs/cgroup/memory/emdx-node/${nodeId}`
        if (existsSync(cgroupParent)) {
          const children = (await readdir(cgroupParent, { withFileTypes: true })).filter(entry => entry.isDirectory())
          expect(children.map(entry => entry.name)).toEqual([])
        }
      } finally {
        await restarted.executor?.close()
      }
    })
  })
}
