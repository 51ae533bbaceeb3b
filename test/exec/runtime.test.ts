import Docker from 'dockerode'
import { describe, expect, it } from 'vitest'
import { missingBackend, reportMissing, requireSandbox, testExecutor } from './support.js'

describe('S13 runtime detection, docker backend', async () => {
  const missing = await missingBackend('docker')
  if (missing !== undefined) {
    reportMissing('docker', missing)
    return
  }
  const info = await new Docker().info() as { Runtimes?: Record<string, unknown> }
  if (info.Runtimes?.runsc === undefined) {
    const missingRuntime = 'the Docker daemon has no runtime named runsc; register one as in .ci/daemon.json'
    if (requireSandbox) {
      it('fake runsc is registered', () => { throw new Error(missingRuntime) })
    } else {
      it.skip(`S13 skipped: ${missingRuntime}`, () => {})
    }
    return
  }

  it('S13 fake runsc is not claimed as gVisor', async () => {
    const sandbox = await testExecutor('docker', { runtime: 'auto' })
    try {
      expect(sandbox.info.runtime).toBe('runc')
      expect(sandbox.info.isolation).toBe('container')
      expect(sandbox.info.reason).toContain('not gVisor')
      const result = await sandbox.executor!.run({ jobId: 's13', command: ['true'] })
      expect(result.runtime).toBe('runc')
    } finally {
      await sandbox.cleanup()
    }
  })

  it('S13 --runtime runsc falls back to runc', async () => {
    const sandbox = await testExecutor('docker', { runtime: 'runsc' })
    try {
      expect(sandbox.info.runtime).toBe('runc')
      expect(sandbox.info.reason).toContain('runsc')
    } finally {
      await sandbox.cleanup()
    }
  })

  it('S13 --require-runtime runsc shares nothing', async () => {
    await expect(testExecutor('docker', { runtime: 'auto', requireRuntime: 'runsc' })).rejects.toThrow(/--require-runtime runsc/)
  })
})

describe('S13 runtime detection, bwrap backend', async () => {
  const missing = await missingBackend('bwrap')
  if (missing !== undefined) {
    reportMissing('bwrap', missing)
    return
  }

  it('S13 bwrap reports namespaces isolation', async () => {
    const sandbox = await testExecutor('bwrap')
    try {
      expect(sandbox.info).toMatchObject({ backend: 'bwrap', runtime: 'bwrap', isolation: 'namespaces' })
    } finally {
      await sandbox.cleanup()
    }
  })

  it('S13 --require-runtime runsc shares nothing', async () => {
    await expect(testExecutor('bwrap', { requireRuntime: 'runsc' })).rejects.toThrow(/--require-runtime runsc/)
  })
})
