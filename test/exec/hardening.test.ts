import { chmod, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import Docker from 'dockerode'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BwrapDriver } from '../../src/exec/bwrap/backend.js'
import { agentSettings } from '../../src/exec/create.js'
import { SandboxExecutor } from '../../src/exec/executor.js'
import { ImageAllowList } from '../../src/exec/images.js'
import { WorkspaceManager } from '../../src/exec/workspace.js'
import { missingBackend, reportMissing, TEST_IMAGE, TEST_LIMITS, TEST_ROOTFS, testExecutor } from './support.js'
import type { BackendName, TestExecutor } from './support.js'

const backends: BackendName[] = ['docker', 'bwrap']

/** Prints what the hardened profile should have set, one fact per line. */
const PROBE = [
  'echo "uid=$(id -u) gid=$(id -g)"',
  'grep -E "^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):" /proc/self/status',
  'echo "interfaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\\n" " ")"',
  'touch /probe-root 2>/dev/null && echo root=writable || echo root=read-only',
  'touch /workspace/probe && echo workspace=writable || echo workspace=read-only',
  'grep -E "^Max (open files|file size)" /proc/self/limits',
  'ls /var/run/docker.sock /run/docker.sock 2>/dev/null || echo docker-socket=absent',
  'unshare -U true 2>&1 | grep -q "Operation not permitted" && echo "unshare-user: Operation not permitted"'
].join('\n')

for (const backend of backends) {
  const missing = await missingBackend(backend)
  describe(`hardened profile, ${backend} backend`, () => {
    if (missing !== undefined) {
      reportMissing(backend, missing)
      return
    }

    let sandbox: TestExecutor
    let facts: string
    beforeAll(async () => {
      sandbox = await testExecutor(backend)
      const result = await sandbox.executor!.run({ jobId: 'probe', command: ['sh', '-c', PROBE] })
      facts = result.stdout
    })
    afterAll(async () => { await sandbox?.cleanup() })

    it('runs as uid 1000, not root', () => {
      expect(facts).toContain('uid=1000 gid=1000')
    })

    it('has no capabilities', () => {
      expect(facts).toMatch(/CapEff:\s+0000000000000000/)
      expect(facts).toMatch(/CapPrm:\s+0000000000000000/)
      expect(facts).toMatch(/CapBnd:\s+0000000000000000/)
    })

    it('sets no-new-privileges', () => {
      expect(facts).toMatch(/NoNewPrivs:\s+1/)
    })

    it('has only the loopback interface', () => {
      expect(facts).toContain('interfaces=lo \n')
    })

    it('has a read-only root and a writable workspace', () => {
      expect(facts).toContain('root=read-only')
      expect(facts).toContain('workspace=writable')
    })

    it('applies the file-size and open-file limits', () => {
      expect(facts).toMatch(new RegExp(`Max open files\\s+${TEST_LIMITS.openFiles}\\s+${TEST_LIMITS.openFiles}`))
      expect(facts).toMatch(new RegExp(`Max file size\\s+${TEST_LIMITS.fileSizeBytes}\\s+${TEST_LIMITS.fileSizeBytes}`))
    })

    it('has no Docker socket', () => {
      expect(facts).toContain('docker-socket=absent')
    })

    it('applies a seccomp filter', () => {
      expect(facts).toMatch(/Seccomp:\s+2/)
    })

    it('rejects creating namespaces', () => {
      // EPERM comes from the seccomp filter. Without it, bubblewrap's
      // --disable-userns makes the call fail with ENOSPC instead.
      expect(facts).toContain('unshare-user: Operation not permitted')
    })

    if (backend === 'docker') {
      it('inspect data shows the hardened settings', async () => {
        const docker = new Docker()
        const cancel = new AbortController()
        const run = await sandbox.executor!.start({ jobId: 'inspect', command: ['sleep', '30'], env: { STAGE_SECRET: 'not-in-inspect' }, signal: cancel.signal })
        try {
          const [listed] = await docker.listContainers({ filters: { label: ['emdx.job=inspect'] } })
          expect(listed).toBeDefined()
          const details = await docker.getContainer(listed!.Id).inspect()
          const host = details.HostConfig
          expect(host.NetworkMode).toBe('none')
          expect(host.ReadonlyRootfs).toBe(true)
          expect(host.CapDrop).toEqual(['ALL'])
          expect(host.CapAdd ?? []).toEqual([])
          expect(host.SecurityOpt).toContain('no-new-privileges:true')
          expect(host.SecurityOpt?.some((option: string) => option.includes('unconfined'))).toBe(false)
          expect(host.Privileged).toBe(false)
          expect(host.Runtime).toBe('runc')
          expect(host.PidsLimit).toBe(TEST_LIMITS.pids)
          expect(host.Memory).toBe(TEST_LIMITS.memoryBytes)
          expect(host.MemorySwap).toBe(TEST_LIMITS.memoryBytes)
          expect(host.NanoCpus).toBe(TEST_LIMITS.cpus * 1e9)
          expect(host.Init).toBe(true)
          expect(host.Tmpfs?.['/tmp']).toContain(`size=${TEST_LIMITS.tmpBytes}`)
          expect(host.LogConfig?.Type).toBe('none')
          expect(details.Config.User).toBe('1000:1000')
          expect(details.Config.Labels['emdx.node']).toMatch(/^test-/)
          expect(details.Config.Env.join('\n')).not.toContain('not-in-inspect')
          expect(details.Mounts.map(mount => mount.Destination).sort()).toEqual(['/workspace'])
          expect(details.Mounts[0]?.Source.startsWith(sandbox.stateDir)).toBe(true)
        } finally {
          cancel.abort()
          expect((await run.result).outcome).toBe('cancelled')
          await run.cleanedUp
        }
      })
    }
  })
}

describe('bwrap backend without cgroups', async () => {
  const missing = await missingBackend('bwrap')
  if (missing !== undefined) {
    reportMissing('bwrap', missing)
    return
  }

  it('falls back to rlimits', async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-rlimits-'))
    await chmod(stateDir, 0o711)
    const logger = pino({ level: 'silent' })
    const info = { backend: 'bwrap' as const, runtime: 'bwrap' as const, isolation: 'namespaces' as const }
    const executor = new SandboxExecutor({
      driver: new BwrapDriver({ nodeId: 'rlimits', workspaces: new WorkspaceManager(path.join(stateDir, 'workspaces'), logger), logger, cgroups: false, info }),
      images: new ImageAllowList([{ name: TEST_IMAGE, rootfs: TEST_ROOTFS }]),
      logger,
      limits: TEST_LIMITS,
      agent: agentSettings()
    })
    try {
      const result = await executor.run({ jobId: 'rlimits', command: ['cat', '/proc/self/limits'] })
      expect(result.outcome).toBe('succeeded')
      expect(result.stdout).toMatch(new RegExp(`Max processes\\s+${TEST_LIMITS.pids}\\s+${TEST_LIMITS.pids}`))
      expect(result.stdout).toMatch(new RegExp(`Max address space\\s+${TEST_LIMITS.memoryBytes}\\s+${TEST_LIMITS.memoryBytes}`))
      const bomb = await executor.run({ jobId: 'rlimits-memory', command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=1G', 'count=1'] })
      expect(bomb.outcome).toBe('failed')
    } finally {
      await executor.close()
      await rm(stateDir, { recursive: true, force: true })
    }
  })
})
