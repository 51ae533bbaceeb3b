import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { STAGE_PROTOCOL } from '../../src/stage/messages.js'
import { runRemoteStage } from '../../src/stage/requester.js'
import { waitFor } from '../support/nodes.js'
import { sampleValue, scrape } from '../support/prometheus.js'
import { requesterContext, succeeded } from '../support/stage.js'
import { defaultAnswer, startStageNetwork } from '../support/stage-network.js'
import type { CapacityRecord } from '../../src/dht/capacity-record.js'
import type { EmdxNode } from '../../src/node/node.js'
import type { RunnerSpec } from '../../src/stage/runner.js'
import type { StageNetwork } from '../support/stage-network.js'

// `/metrics` of real nodes on loopback: the text parses line by line, and
// the counters move when stages run, time out or are rejected.

/** A command the scripted runner reports as a stage that hit its timeout. */
const TIMED_OUT_COMMAND = 'sleep-past-the-timeout'

function answer (spec: RunnerSpec): ReturnType<typeof defaultAnswer> {
  if (spec.command?.[0] === TIMED_OUT_COMMAND) {
    return succeeded('', { outcome: 'timed_out', exitCode: null, message: 'the stage ran past its timeout' })
  }
  return defaultAnswer(spec)
}

/**
 * Runs one command stage from `requester` on the network through the API.
 * Returns once the requester has the result and the executor has finished
 * the job: the executor ends it after the receipt exchange, a moment after
 * the requester returns.
 */
async function runRemoteCommand (requester: EmdxNode, command: string[], executor: EmdxNode): Promise<void> {
  const completed = executor.executor?.stats.completed ?? 0
  const response = await fetch(`${requester.api.url}/api/v1/run`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ command, remote: true, timeoutSeconds: 30, cpus: 0.5, memory: '128m' })
  })
  const lines = (await response.text()).trim().split('\n').map(line => JSON.parse(line) as { type: string })
  if (lines.at(-1)?.type !== 'result') {
    throw new Error(`the run ended without a result: ${JSON.stringify(lines.at(-1))}`)
  }
  await waitFor(() => (executor.executor?.stats.completed ?? 0) > completed, 10_000, 'the executor to finish the job')
}

describe('metrics endpoint', () => {
  let network: StageNetwork
  let requester: EmdxNode
  let executor: EmdxNode

  beforeAll(async () => {
    network = await startStageNetwork(2, { answer })
    network.gate.openForever()
    requester = network.nodes[0] as EmdxNode
    executor = network.nodes[1] as EmdxNode
  })

  afterAll(async () => {
    await network?.stop()
  })

  it('parses as Prometheus text', async () => {
    const metrics = await scrape(requester.api.url)

    expect(metrics.types.get('emdx_stages_total')).toBe('counter')
    expect(metrics.types.get('emdx_stage_duration_seconds')).toBe('histogram')
    expect(metrics.types.get('emdx_balance_millicredits')).toBe('gauge')
    expect(metrics.types.get('emdx_stage_messages_rejected_total')).toBe('counter')
    expect(metrics.types.get('libp2p_data_transfer_bytes_total')).toBe('counter')
    expect(metrics.types.get('process_cpu_user_seconds_total')).toBe('counter')
    expect(sampleValue(metrics, 'emdx_connected_peers')).toBe(1)
    expect(sampleValue(metrics, 'emdx_capacity_cpus', { state: 'shared' })).toBe(requester.config.shareCpu)
    expect(sampleValue(metrics, 'emdx_network_providers')).toBe(1)
    expect(sampleValue(metrics, 'emdx_node_info', { peer_id: requester.peerId.toString(), version: requester.status().version, backend: 'none', runtime: 'none', isolation: 'none' })).toBe(1)
  })

  it('counts a stage on both sides', async () => {
    const executorBefore = await scrape(executor.api.url)
    const requesterBefore = await scrape(requester.api.url)

    await runRemoteCommand(requester, ['echo', 'hello'], executor)
    const executorAfter = await scrape(executor.api.url)
    const requesterAfter = await scrape(requester.api.url)

    const ran = { role: 'executor', outcome: 'succeeded' }
    const sent = { role: 'requester', outcome: 'succeeded' }
    expect(sampleValue(executorAfter, 'emdx_stages_total', ran)).toBe((sampleValue(executorBefore, 'emdx_stages_total', ran) ?? 0) + 1)
    expect(sampleValue(executorAfter, 'emdx_stage_duration_seconds_count', { role: 'executor' })).toBe((sampleValue(executorBefore, 'emdx_stage_duration_seconds_count', { role: 'executor' }) ?? 0) + 1)
    expect(sampleValue(executorAfter, 'emdx_stage_offers_total')).toBe((sampleValue(executorBefore, 'emdx_stage_offers_total') ?? 0) + 1)
    expect(sampleValue(executorAfter, 'emdx_credits_earned_millicredits_total')).toBeGreaterThan(sampleValue(executorBefore, 'emdx_credits_earned_millicredits_total') ?? 0)
    expect(sampleValue(requesterAfter, 'emdx_stages_total', sent)).toBe((sampleValue(requesterBefore, 'emdx_stages_total', sent) ?? 0) + 1)
    expect(sampleValue(requesterAfter, 'emdx_balance_millicredits')).toBeLessThan(sampleValue(requesterBefore, 'emdx_balance_millicredits') ?? 0)
    expect(sampleValue(requesterAfter, 'emdx_discovery_capacity_queries_total')).toBeGreaterThan(sampleValue(requesterBefore, 'emdx_discovery_capacity_queries_total') ?? 0)
    expect(sampleValue(requesterAfter, 'libp2p_data_transfer_bytes_total', { protocol: '/emdx/stage/1.0.0 sent' })).toBeGreaterThan(0)
  })

  it('counts timed out stages', async () => {
    const labels = { role: 'executor', outcome: 'timed_out' }
    const before = sampleValue(await scrape(executor.api.url), 'emdx_stages_total', labels) ?? 0

    await runRemoteCommand(requester, [TIMED_OUT_COMMAND], executor)
    const after = sampleValue(await scrape(executor.api.url), 'emdx_stages_total', labels)

    expect(after).toBe(before + 1)
  })

  it('counts rejected offers by reason', async () => {
    const labels = { kind: 'offer', reason: 'full' }
    const before = sampleValue(await scrape(executor.api.url), 'emdx_stage_messages_rejected_total', labels) ?? 0
    const record = executor.advertiser?.currentCapacityRecord() as CapacityRecord
    const tooBig = {
      kind: 'command' as const,
      stage: 'command',
      payload: { kind: 'command' as const, command: ['echo', 'too big'] },
      needs: { cpus: 64, memoryBytes: 256 * 1024 ** 2 },
      timeoutMs: 10_000,
      maxCredits: 10_000
    }

    await expect(runRemoteStage(requesterContext(requester), record, tooBig, { signal: AbortSignal.timeout(20_000) })).rejects.toThrow(/free CPUs/)
    const after = sampleValue(await scrape(executor.api.url), 'emdx_stage_messages_rejected_total', labels)

    expect(after).toBe(before + 1)
  })

  it('counts protocol violations by reason', async () => {
    const labels = { kind: 'violation', reason: 'garbage' }
    const before = sampleValue(await scrape(executor.api.url), 'emdx_stage_messages_rejected_total', labels) ?? 0
    const counted = executor.executor?.stats.violations.garbage ?? 0
    const stream = await requester.libp2p.dialProtocol(executor.peerId, STAGE_PROTOCOL, { signal: AbortSignal.timeout(5000) })

    // A length prefix of 32 and 32 bytes that decode to no message.
    stream.send(Uint8Array.of(32))
    stream.send(new Uint8Array(32).fill(0xff))
    await stream.close().catch(() => {})
    await waitFor(() => (executor.executor?.stats.violations.garbage ?? 0) > counted, 10_000, 'the executor to count the violation')
    const after = sampleValue(await scrape(executor.api.url), 'emdx_stage_messages_rejected_total', labels)

    expect(after).toBe(before + 1)
  })
})
