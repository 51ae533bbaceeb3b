import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/node/config.js'
import { silentLogger } from '../../src/node/logger.js'
import { EmdxNode } from '../../src/node/node.js'
import { MAX_TRUST_MESSAGE_BYTES, TRUST_PROTOCOL } from '../../src/reputation/trust-protocol.js'
import { Reputation } from '../../src/reputation/reputation.js'
import { newSigner } from '../helpers/credits.js'

// Two real nodes on loopback swap trust reports over /emdx/trust/1.0.0; a
// peer sending garbage, a report in another peer's name or an oversized
// message gets its stream reset, and the node goes on serving.

async function startNode (folder: string, name: string): Promise<EmdxNode> {
  const config = await loadConfig(path.join(folder, name), { port: '0', apiPort: '0', listenHost: '127.0.0.1', mdns: false })
  return await EmdxNode.start({ config, logger: silentLogger(), skipSandbox: true })
}

/** Writes one raw message on a fresh trust stream and returns whether the listener sent a response. */
async function sendRaw (from: EmdxNode, to: EmdxNode, message: Uint8Array): Promise<boolean> {
  const stream = await from.libp2p.dialProtocol(to.peerId, TRUST_PROTOCOL)
  const messages = lpStream(stream, { maxDataLength: MAX_TRUST_MESSAGE_BYTES * 4 })
  try {
    await messages.write(message)
    await messages.read({ signal: AbortSignal.timeout(5000) })
    return true
  } catch {
    return false
  }
}

describe('trust protocol', () => {
  let folder: string
  let listener: EmdxNode
  let dialer: EmdxNode

  beforeAll(async () => {
    folder = await mkdtemp(path.join(os.tmpdir(), 'emdx-trust-'))
    listener = await startNode(folder, 'listener')
    dialer = await startNode(folder, 'dialer')
    await dialer.libp2p.dial(multiaddr(listener.addresses()[0]!))
  })

  afterAll(async () => {
    await dialer?.stop()
    await listener?.stop()
    await rm(folder, { recursive: true, force: true })
  })

  it('resets a garbage message', async () => {
    const answered = await sendRaw(dialer, listener, new Uint8Array([0xde, 0xad, 0xbe, 0xef]))

    expect(answered).toBe(false)
    expect(listener.trustExchange.badMessages).toBe(1)
  })

  it('resets a report of another peer', async () => {
    const other = await newSigner()
    const report = new Reputation({ self: other.peerId, bootstrapPeers: [] }).createReport(other)

    const answered = await sendRaw(dialer, listener, report)

    expect(answered).toBe(false)
    expect(listener.trustExchange.badMessages).toBe(2)
  })

  it('resets an oversized message', async () => {
    const answered = await sendRaw(dialer, listener, new Uint8Array(MAX_TRUST_MESSAGE_BYTES + 1))

    expect(answered).toBe(false)
    expect(listener.trustExchange.badMessages).toBe(3)
  })

  it('swaps reports both ways', async () => {
    const provider = await newSigner()
    listener.reputation.recordOutcome(provider.peerId, 'completed')

    const received = await dialer.trustExchange.exchange(listener.peerId)

    expect(received.reporter).toBe(listener.peerId.toString())
    expect(received.trust.get(provider.peerId)).toBe(1)
    expect(listener.reputation.snapshot().reports).toBe(1)
    expect(dialer.reputation.snapshot().reports).toBe(1)
  })

  it('limits exchanges per peer', async () => {
    await expect(dialer.trustExchange.exchange(listener.peerId)).rejects.toThrow(/trust exchange with .* failed/)
    expect(listener.trustExchange.badMessages).toBe(4)
  })
})
