import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { missingBackend, reportMissing, TEST_LIMITS, testExecutor } from './support.js'
import type { BackendName } from './support.js'

for (const backend of ['docker', 'bwrap'] as BackendName[]) {
  const missing = await missingBackend(backend)

  describe.runIf(missing === undefined)(`${backend} warm pool`, () => {
    it('serves a job needing less memory', async () => {
      const sandbox = await testExecutor(backend, { warmPoolSize: 1 })
      try {
        await sandbox.executor?.warmUp()
        const memoryBytes = 96 * 1024 ** 2

        // A process that tries to hold more than the job's limit but less than the pool's.
        const result = await sandbox.executor?.run({
          jobId: `warm-limits-${backend}`,
          command: ['sh', '-c', 'dd if=/dev/zero of=/dev/null bs=160M count=1 && echo survived'],
          limits: { ...TEST_LIMITS, memoryBytes }
        })

        expect(memoryBytes).toBeLessThan(TEST_LIMITS.memoryBytes)
        expect(result?.outcome).toBe('out_of_memory')
        expect(result?.stdout).not.toContain('survived')
      } finally {
        await sandbox.cleanup()
      }
    }, 60_000)

    it('removes the sandbox once the caller settles', async () => {
      const sandbox = await testExecutor(backend, { warmPoolSize: 1 })
      try {
        await sandbox.executor?.warmUp()
        let settle = (): void => {}
        const cleanupAfter = new Promise<void>(resolve => { settle = resolve })

        const run = await sandbox.executor?.start({ jobId: `settle-${backend}`, command: ['true'], limits: TEST_LIMITS, cleanupAfter })
        const result = await run?.result
        let cleaned = false
        void run?.cleanedUp.then(() => { cleaned = true })
        await sleep(500)
        const cleanedBeforeSettling = cleaned
        settle()
        await run?.cleanedUp

        expect(result?.outcome).toBe('succeeded')
        expect(cleanedBeforeSettling).toBe(false)
        expect(cleaned).toBe(true)
      } finally {
        await sandbox.cleanup()
      }
    }, 60_000)
  })

  if (missing !== undefined) {
    describe(`${backend} warm pool`, () => {
      reportMissing(backend, missing)
    })
  }
}
