import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import nacl from 'tweetnacl'
import { describe, expect, it } from 'vitest'
import { issueReceipt } from '../../src/credits/receipt.js'
import { encodeCanonical } from '../../src/records/canonical.js'
import { sha256 } from '../../src/records/hash.js'
import { createSigner } from '../../src/records/signature.js'
import { StageChannel } from '../../src/stage/channel.js'
import { acceptSchema, chunkSchema, countersignedSchema, ledgerRequestSchema, ledgerSegmentSchema, MAX_MESSAGE_BYTES, MAX_PAYLOAD_WITH_OFFER_BYTES, offerSchema, rejectSchema, sealMessageSchema, STAGE_PROTOCOL } from '../../src/stage/messages.js'
import { encodeChainSegment } from '../../src/credits/chain.js'
import { newJobId, RemoteStageError, runRemoteStage } from '../../src/stage/requester.js'
import { open, seal } from '../../src/stage/sealing.js'
import { ManualCapacity } from '../support/capacity.js'
import { startTestNode, waitFor } from '../support/nodes.js'
import { requesterContext, ScriptedRunner, startExecutorService, succeeded } from '../support/stage.js'
import type { ReceiptBody } from '../../src/credits/receipt.js'
import type { CapacityRecord } from '../../src/dht/capacity-record.js'
import type { EmdxNode } from '../../src/node/node.js'
import type { Offer } from '../../src/stage/messages.js'
import type { Stream } from '@libp2p/interface'

async function pair (): Promise<{ executor: EmdxNode, requester: EmdxNode, record: CapacityRecord }> {
  const executor = await startTestNode({}, { capacity: new ManualCapacity(), advertiserTiming: { debounceMs: 50, retryMs: 100 } })
  const requester = await startTestNode({ bootstrap: executor.addresses(), share: false })
  await waitFor(() => requester.libp2p.getPeers().length === 1, 10_000, 'the requester to connect')
  return { executor, requester, record: executor.advertiser?.currentCapacityRecord() as CapacityRecord }
}

const payload = { kind: 'command' as const, command: ['echo', 'hello'] }
const answers = {
  accept: { schema: acceptSchema, maxBytes: MAX_MESSAGE_BYTES.answer },
  reject: { schema: rejectSchema, maxBytes: MAX_MESSAGE_BYTES.answer }
}

function commandTask (changes: Record<string, unknown> = {}): Parameters<typeof runRemoteStage>[2] {
  return { kind: 'command', stage: 'test', payload, needs: { cpus: 1, memoryBytes: 256 * 1024 ** 2 }, timeoutMs: 10_000, maxCredits: 10_000, ...changes }
}

function offerFor (requester: EmdxNode, plaintext: Uint8Array, changes: Partial<Offer> = {}): Offer {
  return {
    type: 'offer',
    version: 1,
    jobId: newJobId(),
    kind: 'command',
    stage: 'test',
    needs: { cpus: 1, memoryBytes: 256 * 1024 ** 2 },
    timeoutMs: 10_000,
    maxCredits: 10_000,
    payload: { bytes: plaintext.byteLength, hash: sha256(plaintext) },
    requesterKey: requester.encryptionKey.publicKey,
    ...changes
  }
}

async function openStream (requester: EmdxNode, executor: EmdxNode): Promise<Stream> {
  return await requester.libp2p.dialProtocol(executor.peerId, STAGE_PROTOCOL, { signal: AbortSignal.timeout(5000) })
}

/** Resolves when the stream is closed or reset by either side. */
async function streamEnded (stream: Stream, timeoutMs = 10_000): Promise<void> {
  if (stream.status === 'closed' || stream.status === 'aborted' || stream.status === 'reset') {
    return
  }
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`stream still ${stream.status} after ${timeoutMs} ms`)) }, timeoutMs)
    stream.addEventListener('close', () => {
      clearTimeout(timer)
      resolve()
    }, { once: true })
  })
}

function varint (value: number): Uint8Array {
  const bytes: number[] = []
  let rest = value
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80)
    rest = Math.floor(rest / 128)
  }
  bytes.push(rest)
  return new Uint8Array(bytes)
}

/** Reads the executor's answer to an offer, sending the requester's ledger chain when it asks. */
async function answerToOffer (channel: StageChannel, requester: EmdxNode): Promise<Awaited<ReturnType<StageChannel['read']>>> {
  const first = await channel.read({ ...answers, 'ledger-request': { schema: ledgerRequestSchema, maxBytes: MAX_MESSAGE_BYTES.answer } }, 5000)
  if (first.type !== 'ledger-request') {
    return first
  }
  const segment = encodeChainSegment(await requester.ledger.exportSegment(first.fromSeq))
  await channel.write({ type: 'ledger-segment', jobId: first.jobId, segment })
  return await channel.read(answers, 5000)
}

/** Runs a normal stage, proving the executor still serves. */
async function stillServes (requester: EmdxNode, record: CapacityRecord): Promise<string> {
  const outcome = await runRemoteStage(requesterContext(requester), record, commandTask(), { signal: AbortSignal.timeout(20_000) })
  return outcome.result.stdout
}

describe('malformed stage messages', () => {
  const frames: Array<[string, () => Uint8Array[]]> = [
    ['a truncated frame', () => [varint(100), new Uint8Array(10)]],
    ['an oversized frame', () => [varint(64 * 1024 * 1024), new Uint8Array(1024)]],
    ['garbage', () => [varint(32), new Uint8Array(32).fill(0xff)]],
    ['a chunk before the offer', () => {
      const bytes = encodeCanonical({ type: 'chunk', index: 0, data: new Uint8Array(8) })
      return [varint(bytes.byteLength), bytes]
    }]
  ]

  for (const [name, build] of frames) {
    it(`resets the stream on ${name}`, async () => {
      const { executor, requester, record } = await pair()
      const runner = new ScriptedRunner(async () => succeeded('ok'))
      const { service, leases } = await startExecutorService(executor, runner)
      const stream = await openStream(requester, executor)

      for (const bytes of build()) {
        stream.send(bytes)
      }
      await stream.close().catch(() => {})
      await waitFor(() => Object.values(service.stats.violations).reduce((sum: number, n) => sum + (n ?? 0), 0) === 1, 10_000, 'a counted violation')

      expect(runner.specs).toHaveLength(0)
      await waitFor(() => leases.free().cpus === 2, 5000, 'the lease to be released')
      expect(await stillServes(requester, record)).toBe('ok')
    })
  }

  it('releases the lease on an offer after the accept', async () => {
    const { executor, requester, record } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    const { service, leases } = await startExecutorService(executor, runner)
    const stream = await openStream(requester, executor)
    const channel = new StageChannel(stream)
    const plaintext = encodeCanonical(payload)
    const offer = offerFor(requester, plaintext)
    await channel.write(offer)
    await answerToOffer(channel, requester)

    // A second offer where the payload header belongs.
    await channel.write(offerFor(requester, plaintext)).catch(() => {})
    await streamEnded(stream)
    await waitFor(() => service.stats.violations.unexpected === 1, 10_000, 'an unexpected-message violation')

    await waitFor(() => leases.free().cpus === 2, 5000, 'the lease to be released')
    expect(runner.specs).toHaveLength(0)
    expect(await stillServes(requester, record)).toBe('ok')
  })

  it('releases the lease when the payload never comes', async () => {
    const { executor, requester } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    const { service, leases } = await startExecutorService(executor, runner, { timing: { leaseMs: 1000 } })
    const channel = new StageChannel(await openStream(requester, executor))

    await channel.write(offerFor(requester, encodeCanonical(payload)))
    await waitFor(() => leases.free().cpus === 1, 5000, 'the lease')
    await waitFor(() => service.stats.violations.timeout === 1, 10_000, 'the lease to time out')

    await waitFor(() => leases.free().cpus === 2, 5000, 'the lease to be released')
    expect(runner.specs).toHaveLength(0)
  })
})

describe('payload attacks', () => {
  it('rejects a replayed job id', async () => {
    const { executor, requester, record } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    await startExecutorService(executor, runner)
    const jobId = newJobId()
    await runRemoteStage(requesterContext(requester), record, commandTask({ jobId }))

    const error = await runRemoteStage(requesterContext(requester), record, commandTask({ jobId })).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(RemoteStageError)
    expect((error as RemoteStageError).reason).toBe('replayed')
    expect(runner.specs).toHaveLength(1)
  })

  it('rejects a replayed payload key', async () => {
    const { executor, requester } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    const { service } = await startExecutorService(executor, runner)
    const plaintext = encodeCanonical(payload)
    const first = offerFor(requester, plaintext)
    const sealed = seal(plaintext, executor.encryptionKey.publicKey, { jobId: first.jobId, purpose: 'payload' })
    const channel = new StageChannel(await openStream(requester, executor))
    await channel.write(first)
    await answerToOffer(channel, requester)
    await channel.write({ type: 'seal', purpose: 'payload', ...sealed.header })
    for (const [index, data] of sealed.chunks.entries()) {
      await channel.write({ type: 'chunk', index, data })
    }
    await waitFor(() => runner.specs.length === 1, 10_000, 'the first job to run')
    channel.abort(new Error('done with the first job'))

    // A second job whose payload reuses the first one's ephemeral key and chunks.
    const replay = new StageChannel(await openStream(requester, executor))
    await replay.write(offerFor(requester, plaintext))
    await answerToOffer(replay, requester)
    await replay.write({ type: 'seal', purpose: 'payload', ...sealed.header })
    const answer = await replay.read(answers, 5000)

    expect(answer.type === 'reject' ? answer.reason : answer.type).toBe('replayed')
    expect(service.stats.rejected.replayed).toBe(1)
    expect(runner.specs).toHaveLength(1)
  })

  it('rejects a payload sealed to another key', async () => {
    const { executor, requester, record } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    const { service, leases } = await startExecutorService(executor, runner)
    const wrongRecord = { ...record, encryptionKey: nacl.box.keyPair().publicKey }

    const error = await runRemoteStage(requesterContext(requester), wrongRecord, commandTask()).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(RemoteStageError)
    expect((error as RemoteStageError).reason).toBe('payload')
    expect(service.stats.rejected.payload).toBe(1)
    expect(runner.specs).toHaveLength(0)
    await waitFor(() => leases.free().cpus === 2, 5000, 'the lease to be released')
  })

  it('rejects a large payload sent with the offer', async () => {
    const { executor, requester, record } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    const { service, leases } = await startExecutorService(executor, runner)
    const plaintext = new Uint8Array(MAX_PAYLOAD_WITH_OFFER_BYTES + 1)
    const channel = new StageChannel(await openStream(requester, executor))

    await channel.write(offerFor(requester, plaintext, { payloadFollows: true }))
    const answer = await channel.read(answers, 5000)

    expect(answer.type === 'reject' ? answer.reason : answer.type).toBe('payload')
    expect(service.stats.rejected.payload).toBe(1)
    expect(runner.specs).toHaveLength(0)
    expect(leases.free().cpus).toBe(2)
    expect(await stillServes(requester, record)).toBe('ok')
  })

  it('rejects a tampered payload', async () => {
    const { executor, requester } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    const { service } = await startExecutorService(executor, runner)
    const plaintext = encodeCanonical(payload)
    const offer = offerFor(requester, plaintext)
    const sealed = seal(plaintext, executor.encryptionKey.publicKey, { jobId: offer.jobId, purpose: 'payload' })
    const chunk = sealed.chunks[0] as Uint8Array
    chunk[3] = (chunk[3] as number) ^ 0x40
    const channel = new StageChannel(await openStream(requester, executor))

    await channel.write(offer)
    await answerToOffer(channel, requester)
    await channel.write({ type: 'seal', purpose: 'payload', ...sealed.header })
    await channel.write({ type: 'chunk', index: 0, data: chunk })
    const answer = await channel.read(answers, 5000)

    expect(answer.type === 'reject' ? answer.reason : answer.type).toBe('payload')
    expect(answer.type === 'reject' ? answer.message : '').toMatch(/failed authentication/)
    expect(service.stats.rejected.payload).toBe(1)
    expect(runner.specs).toHaveLength(0)
  })

  it('rejects a payload that differs from the offered hash', async () => {
    const { executor, requester, record } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    const { service } = await startExecutorService(executor, runner)
    const plaintext = encodeCanonical(payload)
    const other = encodeCanonical({ kind: 'command', command: ['rm', '-rf', '/'] })
    const offer = offerFor(requester, plaintext, { payload: { bytes: other.byteLength, hash: sha256(plaintext) } })
    const sealed = seal(other, executor.encryptionKey.publicKey, { jobId: offer.jobId, purpose: 'payload' })
    const channel = new StageChannel(await openStream(requester, executor))

    await channel.write(offer)
    await answerToOffer(channel, requester)
    await channel.write({ type: 'seal', purpose: 'payload', ...sealed.header })
    for (const [index, data] of sealed.chunks.entries()) {
      await channel.write({ type: 'chunk', index, data })
    }
    const answer = await channel.read(answers, 5000)

    expect(answer.type === 'reject' ? answer.reason : answer.type).toBe('payload')
    expect(service.stats.rejected.payload).toBe(1)
    expect(runner.specs).toHaveLength(0)
    expect(await stillServes(requester, record)).toBe('ok')
  })
})

describe('receipt attacks', () => {
  /**
   * Serves the stage protocol as a cheating executor would: it runs nothing,
   * returns a result, and sends the receipt that `forge` makes.
   */
  async function cheatingExecutor (executor: EmdxNode, forge: (offer: Offer, body: ReceiptBody) => ReturnType<typeof issueReceipt>): Promise<void> {
    await executor.libp2p.handle(STAGE_PROTOCOL, async (stream, connection) => {
      const channel = new StageChannel(stream)
      try {
        const offer = await channel.read({ offer: { schema: offerSchema, maxBytes: MAX_MESSAGE_BYTES.offer } }, 5000)
        if (offer.ledgerFromSeq !== undefined) {
          await channel.read({ 'ledger-segment': { schema: ledgerSegmentSchema, maxBytes: MAX_MESSAGE_BYTES.ledgerSegment } }, 5000)
        }
        const price = { perCpuSecond: 10, perGibSecond: 2, perThousandTokens: 5 }
        await channel.write({ type: 'accept', jobId: offer.jobId, price, heartbeatMs: 1000, leaseMs: 5000 })
        const header = await channel.read({ seal: { schema: sealMessageSchema, maxBytes: 256 } }, 5000)
        const chunks = []
        for (let index = 0; index < header.chunkCount; index++) {
          chunks.push((await channel.read({ chunk: { schema: chunkSchema, maxBytes: MAX_MESSAGE_BYTES.chunk } }, 5000)).data)
        }
        open(header, chunks, executor.encryptionKey.secretKey, { jobId: offer.jobId, purpose: 'payload' }, 1024 * 1024)
        const result = encodeCanonical({ outcome: 'succeeded', exitCode: 0, stdout: 'fake', stdoutTruncated: false, message: '', metrics: { cpuSeconds: 1, wallTimeMs: 1000, peakMemoryBytes: 1024 } })
        const sealed = seal(result, offer.requesterKey, { jobId: offer.jobId, purpose: 'result' })
        await channel.write({ type: 'seal', purpose: 'result', ...sealed.header })
        for (const [index, data] of sealed.chunks.entries()) {
          await channel.write({ type: 'chunk', index, data })
        }
        const body: ReceiptBody = {
          version: 1,
          jobId: offer.jobId,
          requester: connection.remotePeer.toString(),
          executor: executor.peerId.toString(),
          stage: offer.stage,
          kind: offer.kind,
          outcome: 'succeeded',
          resources: { cpuSeconds: 1, wallSeconds: 1, peakMemoryBytes: 1024, agentInputTokens: 0, agentOutputTokens: 0, agentCostUsd: 0 },
          price,
          credits: 10,
          resultHash: sha256(result),
          startedAt: Date.now() - 1000,
          finishedAt: Date.now()
        }
        await channel.write({ type: 'receipt', receipt: forge(offer, body) })
        await channel.read({ countersigned: { schema: countersignedSchema, maxBytes: MAX_MESSAGE_BYTES.receipt } }, 3000)
      } catch {
        // The requester resets the stream when it rejects the receipt.
      }
    })
  }

  const forgeries: Array<[string, (executor: EmdxNode) => Promise<(offer: Offer, body: ReceiptBody) => ReturnType<typeof issueReceipt>>]> = [
    ['signed by the wrong key', async () => {
      const key = await generateKeyPair('Ed25519')
      const stranger = createSigner(key, peerIdFromPrivateKey(key).toString())
      return (_offer, body) => {
        const bytes = encodeCanonical(body)
        return { body: bytes, executorSignature: stranger.sign('receipt', bytes) }
      }
    }],
    ['naming another job', async (executor) => (_offer, body) => issueReceipt({ ...body, jobId: newJobId() }, executor.signer)],
    ['claiming more than the price', async (executor) => (_offer, body) => issueReceipt({ ...body, credits: 5000 }, executor.signer)]
  ]

  for (const [name, makeForger] of forgeries) {
    it(`rejects a receipt ${name}`, async () => {
      const { executor, requester, record } = await pair()
      await cheatingExecutor(executor, await makeForger(executor))

      const error = await runRemoteStage(requesterContext(requester), record, commandTask()).catch((err: unknown) => err)

      expect(error).toBeInstanceOf(RemoteStageError)
      expect((error as RemoteStageError).failure).toBe('result')
      expect(await requester.ledger.recent(10)).toHaveLength(0)
      expect(await executor.ledger.recent(10)).toHaveLength(0)
    })
  }
})

describe('offer flood', () => {
  it('accepts what fits of 200 offers', async () => {
    const executor = await startTestNode({}, { capacity: new ManualCapacity(), advertiserTiming: { debounceMs: 50, retryMs: 100 } })
    const requesters = await Promise.all(Array.from({ length: 4 }, async () => await startTestNode({ bootstrap: executor.addresses(), share: false })))
    await waitFor(() => requesters.every(node => node.libp2p.getPeers().length >= 1), 10_000, 'the requesters to connect')
    const record = executor.advertiser?.currentCapacityRecord() as CapacityRecord
    const runner = new ScriptedRunner(async () => {
      await new Promise(resolve => setTimeout(resolve, 1500))
      return succeeded('done')
    })
    const { service, leases } = await startExecutorService(executor, runner)
    global.gc?.()
    const heapBefore = process.memoryUsage().heapUsed

    const outcomes = await Promise.allSettled(Array.from({ length: 200 }, async (_, index) =>
      await runRemoteStage(requesterContext(requesters[index % 4] as EmdxNode), record, commandTask(), { signal: AbortSignal.timeout(30_000) })))
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore

    const succeededCount = outcomes.filter(outcome => outcome.status === 'fulfilled').length
    const rejections = outcomes
      .filter((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected')
      .map(outcome => outcome.reason as RemoteStageError)
    expect(succeededCount).toBe(2)
    expect(runner.specs).toHaveLength(2)
    expect(rejections).toHaveLength(198)
    for (const rejection of rejections) {
      expect(rejection.failure).toBe('rejected')
      expect(['full', 'busy']).toContain(rejection.reason)
      expect(rejection.retryAfterMs).toBeGreaterThan(0)
    }
    expect(service.stats.offers).toBe(200)
    await waitFor(() => leases.free().cpus === 2, 5000, 'both leases to be released')
    // Rejected offers never get a payload buffered; 200 of them fit in far less than this.
    expect(heapGrowth).toBeLessThan(100 * 1024 * 1024)
    expect(await stillServes(requesters[0] as EmdxNode, record)).toBe('done')
  }, 120_000)
})

describe('admission', () => {
  it('rejects an offer beyond the requester credit', async () => {
    const { executor, requester, record } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    const { service, leases } = await startExecutorService(executor, runner)

    // A new identity has a grant of 100 credits and a credit line of 10.
    const error = await runRemoteStage(requesterContext(requester), record, commandTask({ maxCredits: 500_000 })).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(RemoteStageError)
    expect((error as RemoteStageError).reason).toBe('credit')
    expect((error as RemoteStageError).retryAfterMs).toBeGreaterThan(0)
    expect(service.stats.rejected.credit).toBe(1)
    expect(runner.specs).toHaveLength(0)
    await waitFor(() => leases.free().cpus === 2, 5000, 'the lease to be released')
  })

  it('rejects a requester proven to fork', async () => {
    const { executor, requester, record } = await pair()
    const runner = new ScriptedRunner(async () => succeeded('ok'))
    await startExecutorService(executor, runner)
    executor.reputation.markForker(requester.peerId.toString())

    const error = await runRemoteStage(requesterContext(requester), record, commandTask()).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(RemoteStageError)
    expect((error as RemoteStageError).reason).toBe('distrusted')
    expect(runner.specs).toHaveLength(0)
  })
})
