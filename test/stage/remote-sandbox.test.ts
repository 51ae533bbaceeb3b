import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyReceipt } from '../../src/credits/receipt.js'
import { silentLogger } from '../../src/node/logger.js'
import { EmdxNode } from '../../src/node/node.js'
import { runRemoteStage } from '../../src/stage/requester.js'
import { STAND_IN_LABEL, startMessagesApiStandIn } from '../../src/standin/messages-api.js'
import { capturingLogger, missingBackend, reportMissing, TEST_IMAGE, TEST_ROOTFS } from '../exec/support.js'
import { startSharedNode, stopTestNode, testConfig, waitFor } from '../support/nodes.js'
import { requesterContext } from '../support/stage.js'
import type { CapacityRecord } from '../../src/dht/capacity-record.js'
import type { MessagesApiStandIn } from '../../src/standin/messages-api.js'

const KEY_ENV = 'EMDX_TEST_REMOTE_AGENT_KEY'
const missing = await missingBackend('docker')

describe.runIf(missing === undefined)('remote stages in a real sandbox', () => {
  let standIn: MessagesApiStandIn
  let executor: EmdxNode
  let requester: EmdxNode
  let record: CapacityRecord
  const logs = capturingLogger()
  const apiKey = `sk-emdx-test-${randomBytes(12).toString('hex')}`

  beforeAll(async () => {
    process.env[KEY_ENV] = apiKey
    standIn = await startMessagesApiStandIn({ logger: silentLogger(), expectedApiKey: apiKey })
    const config = await testConfig({
      runtime: 'runc',
      image: [`${TEST_IMAGE}=${TEST_ROOTFS}`],
      agentBaseUrl: standIn.url,
      agentEgress: [`127.0.0.1:${standIn.port}`],
      agentModel: 'claude-stand-in',
      agentApiKeyEnv: KEY_ENV,
      shareCpu: '1',
      shareMem: '1g'
    })
    executor = await EmdxNode.start({ config, logger: logs.logger, advertiserTiming: { debounceMs: 50, retryMs: 100 } })
    requester = await startSharedNode({ bootstrap: executor.addresses(), share: false })
    await waitFor(() => requester.libp2p.getPeers().length === 1, 10_000, 'the requester to connect')
    record = executor.advertiser?.currentCapacityRecord() as CapacityRecord
  }, 120_000)

  afterAll(async () => {
    await stopTestNode(requester)
    await stopTestNode(executor)
    await standIn.close()
    Reflect.deleteProperty(process.env, KEY_ENV)
  }, 60_000)

  it('runs a command stage remotely', async () => {
    const marker = `payload-marker-${randomBytes(6).toString('hex')}`

    const outcome = await runRemoteStage(requesterContext(requester), record, {
      kind: 'command',
      stage: 'command',
      payload: { kind: 'command', command: ['sh', '-c', `echo ${marker} | tr a-z A-Z`] },
      needs: { cpus: 1, memoryBytes: 256 * 1024 ** 2 },
      timeoutMs: 30_000,
      maxCredits: 10_000
    }, { signal: AbortSignal.timeout(60_000) })

    expect(outcome.result.outcome).toBe('succeeded')
    expect(outcome.result.stdout.trim()).toBe(marker.toUpperCase())
    expect(verifyReceipt(outcome.receipt, { countersigned: true }).executor).toBe(executor.peerId.toString())
    expect(logs.lines.filter(line => line.includes(marker) || line.includes(marker.toUpperCase()))).toEqual([])
  })

  it('runs an agent stage remotely', async () => {
    const marker = `prompt-marker-${randomBytes(6).toString('hex')}`

    const outcome = await runRemoteStage(requesterContext(requester), record, {
      kind: 'agent',
      stage: 'idea-prompt',
      payload: { kind: 'agent', prompt: `Turn this idea into a prompt: ${marker}` },
      needs: { cpus: 1, memoryBytes: 512 * 1024 ** 2, agent: 'claude' },
      timeoutMs: 120_000,
      maxCredits: 20_000
    }, { signal: AbortSignal.timeout(180_000) })

    expect(outcome.result.outcome).toBe('succeeded')
    expect(outcome.result.agent?.output).toContain(STAND_IN_LABEL)
    expect(outcome.result.agent?.output).toContain(marker)
    expect(outcome.receiptBody.resources.agentOutputTokens).toBeGreaterThan(0)
    expect(logs.lines.filter(line => line.includes(marker))).toEqual([])
    expect(logs.lines.filter(line => line.includes(apiKey))).toEqual([])
  }, 180_000)

  it('keeps both ledgers verifiable', async () => {
    // The executor appends its side after the requester has its result.
    await waitFor(() => executor.ledger.head().seq === 1, 10_000, 'the executor to record both receipts')
    const executorChain = await executor.ledger.verify()
    const requesterChain = await requester.ledger.verify()

    expect(executorChain.valid).toBe(true)
    expect(requesterChain.valid).toBe(true)
    expect(executorChain.entries).toBe(2)
    expect(requesterChain.entries).toBe(2)
    expect(executor.ledger.balance().earned).toBe(requester.ledger.balance().spent)
  })
})

if (missing !== undefined) {
  describe('remote stages in a real sandbox', () => {
    reportMissing('docker', missing)
  })
}
