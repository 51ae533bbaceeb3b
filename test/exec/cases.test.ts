import { createServer } from 'node:net'
import { readFile, stat } from 'node:fs/promises'
import { createWriteStream } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { mkdtemp, rm, readdir } from 'node:fs/promises'
import tar from 'tar-stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { StageInputError } from '../../src/exec/errors.js'
import { collectWorkspaceFiles } from '../../src/exec/workspace.js'
import { containersWithLabel, missingBackend, processesMatching, reportMissing, testExecutor } from './support.js'
import type { BackendName, TestExecutor } from './support.js'
import type { CollectedFiles } from '../../src/exec/workspace.js'
import type { AddressInfo, Server } from 'node:net'

const backends: BackendName[] = ['docker', 'bwrap']

for (const backend of backends) {
  const missing = await missingBackend(backend)
  describe(`sandbox cases, ${backend} backend`, () => {
    if (missing !== undefined) {
      reportMissing(backend, missing)
      return
    }

    let sandbox: TestExecutor
    const collected = new Map<string, CollectedFiles>()
    beforeAll(async () => {
      sandbox = await testExecutor(backend, {
        collect: async (jobId, workspace) => {
          if (jobId.startsWith('s11')) {
            collected.set(jobId, await collectWorkspaceFiles(workspace, 1024 * 1024))
          }
        }
      })
    })
    afterAll(async () => { await sandbox?.cleanup() })

    const runStage = async (jobId: string, command: string[], extra: Record<string, unknown> = {}) =>
      await sandbox.executor!.run({ jobId, command, ...extra })

    it('S1 true exits with code 0', async () => {
      const result = await runStage('s1', ['true'])
      expect(result.outcome).toBe('succeeded')
      expect(result.exitCode).toBe(0)
    })

    it('S1 exit code of a failing command', async () => {
      const result = await runStage('s1-fail', ['sh', '-c', 'echo out; exit 3'])
      expect(result.outcome).toBe('failed')
      expect(result.exitCode).toBe(3)
      expect(result.stdout).toBe('out\n')
    })

    it('S1 stdout is complete at exit', async () => {
      const expected = Array.from({ length: 3000 }, (_, index) => `${index + 1}\n`).join('')
      for (let attempt = 0; attempt < 5; attempt++) {
        const result = await runStage(`s1-stdout-${attempt}`, ['sh', '-c', 'seq 1 3000; echo err >&2; printf tail'])
        expect(result.stdout).toBe(`${expected}tail`)
      }
    })

    it('S2 endless output is cut and killed', async () => {
      const result = await runStage('s2', ['yes'])
      expect(result.outcome).toBe('output_limit')
      expect(result.stdout.length).toBe(64 * 1024)
      expect(result.stdoutTruncated).toBe(true)
      expect(result.stdoutBytes).toBeGreaterThan(64 * 1024)
    })

    it('S3 output past the cap then exit 0 fails', async () => {
      const result = await runStage('s3', ['sh', '-c', 'head -c 200000 /dev/zero | tr "\\0" x; exit 0'])
      expect(result.outcome).toBe('output_limit')
      expect(result.stdout.length).toBe(64 * 1024)
    })

    it('S4 fork bomb is contained and killed at the deadline', async () => {
      // exec: the shell becomes sleep without forking, which the full pids limit would refuse.
      const result = await runStage('s4', ['sh', '-c', 'bomb() { bomb | bomb & }; bomb; exec sleep 100'], { limits: { timeoutMs: 3000 } })
      expect(result.outcome).toBe('timed_out')
      expect(result.exitCode).toBeNull()
      const after = await runStage('s4-after', ['echo', 'still fine'])
      expect(after.outcome).toBe('succeeded')
      expect(after.stdout).toBe('still fine\n')
    })

    it('S5 memory beyond the limit is out_of_memory', async () => {
      const result = await runStage('s5', ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=1G', 'count=1'], { limits: { memoryBytes: 64 * 1024 ** 2 } })
      expect(result.outcome).toBe('out_of_memory')
      expect(result.metrics.wallTimeMs).toBeLessThan(20_000)
    })

    it('S6 sleep forever is timed_out', async () => {
      const result = await runStage('s6-sleep', ['sleep', '1000'], { limits: { timeoutMs: 1500 } })
      expect(result.outcome).toBe('timed_out')
      expect(result.metrics.wallTimeMs).toBeGreaterThanOrEqual(1500)
    })

    it('S6 self-stopped stage is timed_out', async () => {
      const result = await runStage('s6-stop', ['sh', '-c', 'kill -STOP $$; echo never'], { limits: { timeoutMs: 1500 } })
      expect(result.outcome).toBe('timed_out')
      expect(result.stdout).toBe('')
    })

    it('S7 background process does not survive', async () => {
      // A number no other process on the machine is likely to sleep for.
      const marker = `sleep ${700_000 + Math.floor(Math.random() * 99_999)}`
      const run = await sandbox.executor!.start({ jobId: 's7', command: ['sh', '-c', `nohup ${marker} >/dev/null 2>&1 & echo started`] })
      const result = await run.result
      await run.cleanedUp
      expect(result.outcome).toBe('succeeded')
      expect(await processesMatching(marker)).toBe(0)
      if (backend === 'docker') {
        expect(await containersWithLabel('emdx.job=s7')).toBe(0)
      }
      const mounts = await readFile('/proc/self/mountinfo', 'utf8')
      expect(mounts).not.toContain(path.join(sandbox.stateDir, 'workspaces', 's7'))
      expect(await readdir(path.join(sandbox.stateDir, 'workspaces'))).not.toContain('s7')
    })

    it('S8 filling the disk stops at the workspace cap', async () => {
      const result = await runStage('s8', ['dd', 'if=/dev/zero', 'of=/workspace/fill', 'bs=1M', 'count=100'])
      expect(result.outcome).toBe('disk_limit')
      const after = await runStage('s8-after', ['sh', '-c', 'echo ok > /workspace/f && cat /workspace/f'])
      expect(after.outcome).toBe('succeeded')
      expect(after.stdout).toBe('ok\n')
    })

    describe('S9 network', () => {
      let server: Server
      let connections = 0
      beforeAll(async () => {
        server = createServer(socket => { connections++; socket.end('hello\n') })
        await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
      })
      afterAll(async () => { await new Promise(resolve => server.close(resolve)) })

      it('S9 host loopback port is unreachable', async () => {
        const port = (server.address() as AddressInfo).port
        const result = await runStage('s9-tcp', ['nc', '-w', '2', '127.0.0.1', String(port)])
        expect(result.outcome).toBe('failed')
        expect(result.stdout).not.toContain('hello')
        expect(connections).toBe(0)
      })

      it('S9 DNS lookup fails', async () => {
        const result = await runStage('s9-dns', ['nslookup', 'example.com'])
        expect(result.outcome).toBe('failed')
      })

      it('S9 only loopback interface exists', async () => {
        const result = await runStage('s9-ifaces', ['cat', '/proc/net/dev'])
        const interfaces = result.stdout.split('\n').slice(2).map(line => line.split(':')[0]?.trim()).filter(name => name !== '')
        expect(interfaces).toEqual(['lo'])
      })
    })

    it('S10 stage sees only chosen variables', async () => {
      process.env.EMDX_TEST_HOST_SECRET = 'host-secret-value'
      const [first, second] = await Promise.all([
        runStage('s10-a', ['sh', '-c', 'sleep 0.5; env'], { env: { JOB_SECRET: 'secret-of-a' } }),
        runStage('s10-b', ['sh', '-c', 'sleep 0.5; env'], { env: { JOB_NOTE: 'b' } })
      ])
      delete process.env.EMDX_TEST_HOST_SECRET
      expect(first?.stdout).toContain('JOB_SECRET=secret-of-a')
      expect(first?.stdout).not.toContain('host-secret-value')
      expect(second?.stdout).toContain('JOB_NOTE=b')
      expect(second?.stdout).not.toContain('secret-of-a')
      expect(second?.stdout).not.toContain('host-secret-value')
      const names = (second?.stdout ?? '').split('\n').filter(line => line.includes('=')).map(line => line.split('=')[0]).sort()
      // The shell adds PWD, OLDPWD and SHLVL; Docker adds HOSTNAME.
      const chosen = ['HOME', 'HOSTNAME', 'JOB_NOTE', 'LANG', 'OLDPWD', 'PATH', 'PWD', 'SHLVL', 'TMPDIR']
      expect(names.filter(name => !chosen.includes(name ?? ''))).toEqual([])
    })

    it('S11 links out of the workspace are not followed', async () => {
      const passwd = await readFile('/etc/passwd')
      const result = await runStage('s11', ['sh', '-c', 'ln -s /etc/passwd passwd-link && ln -s ../../ up && echo data > real && ln real hard && mkdir d && echo inner > d/file'])
      expect(result.outcome).toBe('succeeded')
      const files = collected.get('s11')
      expect(files?.files.map(file => file.path)).toEqual(['d/file'])
      expect(files?.files.some(file => file.content.equals(passwd))).toBe(false)
      expect(files?.skipped).toEqual(expect.arrayContaining([
        { path: 'passwd-link', reason: 'symlink' },
        { path: 'up', reason: 'symlink' },
        { path: 'real', reason: 'hardlink' },
        { path: 'hard', reason: 'hardlink' }
      ]))
      expect((await readFile('/etc/passwd')).equals(passwd)).toBe(true)
    })

    describe('S12 input archives', () => {
      let folder: string
      beforeAll(async () => { folder = await mkdtemp(path.join(os.tmpdir(), 'emdx-s12-')) })
      afterAll(async () => { await rm(folder, { recursive: true, force: true }) })

      const cases: Array<{ name: string, rule: string, entries: () => tar.Pack }> = [
        { name: 'parent path', rule: 'parentPath', entries: () => pack([{ name: '../x', content: 'x' }]) },
        { name: 'absolute path', rule: 'absolutePath', entries: () => pack([{ name: '/etc/evil', content: 'x' }]) },
        { name: 'device file', rule: 'entryType', entries: () => pack([{ name: 'dev', type: 'character-device' }]) },
        { name: 'symlink entry', rule: 'entryType', entries: () => pack([{ name: 'link', type: 'symlink', linkname: '/etc/passwd' }]) },
        { name: 'too many entries', rule: 'maxEntries', entries: () => pack(Array.from({ length: 10_001 }, (_, index) => ({ name: `f${index}`, content: '' }))) }
      ]
      for (const entry of cases) {
        it(`S12 rejects ${entry.name}`, async () => {
          const archive = path.join(folder, `${entry.rule}-${entry.name.replaceAll(' ', '-')}.tar`)
          await pipeline(entry.entries(), createWriteStream(archive))
          const attempt = runStage(`s12-${entry.rule}`, ['true'], { input: { archivePath: archive } })
          await expect(attempt).rejects.toBeInstanceOf(StageInputError)
          await expect(attempt).rejects.toMatchObject({ rule: entry.rule })
          expect(await readdir(path.join(sandbox.stateDir, 'workspaces'))).not.toContain(`s12-${entry.rule}`)
        })
      }

      it('S12 rejects a gzip that expands past the limit', async () => {
        const archive = path.join(folder, 'bomb.tar.gz')
        const packer = tar.pack()
        const size = 1024 ** 3
        const entry = packer.entry({ name: 'zeros', size })
        const written = pipeline(packer, createGzip({ level: 9 }), createWriteStream(archive))
        const zeros = Buffer.alloc(1024 * 1024)
        for (let offset = 0; offset < size; offset += zeros.length) {
          if (!entry.write(zeros)) await new Promise<void>(resolve => { entry.once('drain', () => { resolve() }) })
        }
        entry.end(() => {})
        packer.finalize()
        await written
        expect((await stat(archive)).size).toBeLessThan(4 * 1024 * 1024)
        const attempt = runStage('s12-bomb', ['true'], { input: { archivePath: archive } })
        await expect(attempt).rejects.toMatchObject({ rule: 'maxTotalBytes' })
        await expect(attempt).rejects.toThrow(/16777216 bytes/)
      })

      it('S12 extracts a valid archive', async () => {
        const archive = path.join(folder, 'valid.tar')
        await pipeline(pack([{ name: 'src/', type: 'directory' }, { name: 'src/a.txt', content: 'alpha' }]), createWriteStream(archive))
        const result = await runStage('s12-valid', ['sh', '-c', 'cat src/a.txt && echo more >> src/a.txt'], { input: { archivePath: archive } })
        expect(result.outcome).toBe('succeeded')
        expect(result.stdout).toBe('alpha')
      })
    })
  })
}

interface PackEntry {
  name: string
  content?: string
  type?: tar.Header['type']
  linkname?: string
}

function pack (entries: PackEntry[]): tar.Pack {
  const packer = tar.pack()
  for (const entry of entries) {
    packer.entry({ name: entry.name, type: entry.type ?? 'file', linkname: entry.linkname, mode: 0o644 }, entry.content ?? '')
  }
  packer.finalize()
  return packer
}

