import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startMessagesApiStandIn, STAND_IN_FILE_NAME, STAND_IN_LABEL } from '../../src/standin/messages-api.js'
import { collectWorkspaceFiles } from '../../src/exec/workspace.js'
import { capturingLogger, missingBackend, reportMissing, TEST_LIMITS, testExecutor } from './support.js'
import type { MessagesApiStandIn } from '../../src/standin/messages-api.js'
import type { BackendName, TestExecutor } from './support.js'
import type { CollectedFiles } from '../../src/exec/workspace.js'
import type { AddressInfo, Server } from 'node:net'

const backends: BackendName[] = ['docker', 'bwrap']

/** The real CLI needs more than the hostile cases: a few hundred MB and many threads. */
const AGENT_LIMITS = { ...TEST_LIMITS, memoryBytes: 1024 ** 3, pids: 512, timeoutMs: 120_000, tmpBytes: 128 * 1024 ** 2 }

for (const backend of backends) {
  const missing = await missingBackend(backend)
  describe(`agent in the sandbox, ${backend} backend`, () => {
    if (missing !== undefined) {
      reportMissing(backend, missing)
      return
    }

    const apiKey = `sk-emdx-test-${randomBytes(16).toString('hex')}`
    const { logger, lines } = capturingLogger()
    let standIn: MessagesApiStandIn
    let other: Server
    let otherConnections = 0
    let sandbox: TestExecutor
    const collected = new Map<string, CollectedFiles>()

    beforeAll(async () => {
      standIn = await startMessagesApiStandIn({ logger, expectedApiKey: apiKey })
      other = createServer(socket => { otherConnections++; socket.end('HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret') })
      await new Promise<void>(resolve => other.listen(0, '127.0.0.1', resolve))
      sandbox = await testExecutor(backend, {
        logger,
        limits: AGENT_LIMITS,
        agentEgress: [`127.0.0.1:${standIn.port}`],
        agent: { apiKey, baseUrl: standIn.url, model: 'claude-stand-in' },
        collect: async (jobId, workspace) => { collected.set(jobId, await collectWorkspaceFiles(workspace, 1024 * 1024)) }
      })
    })
    afterAll(async () => {
      await sandbox?.cleanup()
      await standIn?.close()
      await new Promise(resolve => other?.close(resolve))
    })

    it('real Claude CLI edits the workspace', async () => {
      const result = await sandbox.executor!.run({ jobId: 'agent-write', agent: { prompt: 'Write the stand-in file.' } })
      expect(result.outcome, result.message).toBe('succeeded')
      expect(result.agent?.isError).toBe(false)
      expect(result.agent?.output).toContain(STAND_IN_LABEL)
      expect(result.agent?.usage.inputTokens).toBeGreaterThan(0)
      expect(result.agent?.usage.outputTokens).toBeGreaterThan(0)
      expect(result.agent?.usage.costUsd).toBeGreaterThan(0)
      const written = collected.get('agent-write')?.files.find(file => file.path === STAND_IN_FILE_NAME)
      expect(written?.content.toString('utf8')).toContain(STAND_IN_LABEL)
      expect(standIn.requests.filter(request => request.reply === 'tool_use')).toHaveLength(1)
      expect(standIn.requests.filter(request => request.reply === 'text')).toHaveLength(1)
      expect(standIn.requests.every(request => request.apiKeyAccepted)).toBe(true)
    })

    it('API key is in no log line or result', async () => {
      const result = await sandbox.executor!.run({ jobId: 'agent-key', agent: { prompt: 'Write the stand-in file again.' } })
      expect(result.outcome, result.message).toBe('succeeded')
      expect(JSON.stringify(result)).not.toContain(apiKey)
      expect(lines.length).toBeGreaterThan(0)
      expect(lines.filter(line => line.includes(apiKey))).toEqual([])
      expect(lines.filter(line => line.includes(apiKey.slice(-16)))).toEqual([])
    })

    it('egress proxy rejects an unlisted server', async () => {
      const egress = await testExecutor(backend, {
        logger,
        limits: AGENT_LIMITS,
        agentEgress: [`127.0.0.1:${standIn.port}`],
        agent: {
          apiKey,
          command: ['/bin/sh', '-c', [
            `wget -q -O - http://127.0.0.1:${(other.address() as AddressInfo).port}/ && echo other-reached || echo other-refused`,
            `wget -q -O /dev/null http://127.0.0.1:${standIn.port}/ && echo stand-in-reached || echo stand-in-refused`,
            `env -u http_proxy -u HTTP_PROXY nc -w 2 127.0.0.1 ${(other.address() as AddressInfo).port} </dev/null && echo direct-reached || echo direct-refused`
          ].join('\n')]
        }
      })
      try {
        const requestsBefore = standIn.requests.length
        const result = await egress.executor!.run({ jobId: 'egress', agent: { prompt: 'unused' } })
        expect(result.stdout).toContain('other-refused')
        expect(result.stdout).toContain('stand-in-reached')
        expect(result.stdout).toContain('direct-refused')
        expect(otherConnections).toBe(0)
        expect(standIn.requests.length).toBe(requestsBefore + 1)
        expect(egress.executor!.egressStats()).toEqual({ allowed: 1, rejected: 1 })
        const rejections = lines.filter(line => line.includes('egress rejected'))
        expect(rejections.length).toBeGreaterThanOrEqual(1)
        expect(rejections.at(-1)).toContain(`127.0.0.1:${(other.address() as AddressInfo).port}`)
      } finally {
        await egress.cleanup()
      }
    })

    it('command stages get no egress', async () => {
      const result = await sandbox.executor!.run({ jobId: 'no-egress', command: ['sh', '-c', `wget -q -O /dev/null http://127.0.0.1:${standIn.port}/ && echo reached || echo refused; env`] })
      expect(result.stdout).toContain('refused')
      expect(result.stdout).not.toContain('HTTP_PROXY')
      expect(result.stdout).not.toContain(apiKey)
    })
  })
}
