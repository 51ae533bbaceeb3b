import { describe, expect, it } from 'vitest'
import { ManualCapacity } from '../support/capacity.js'
import { runCli } from '../support/cli.js'
import { startTestNode, waitFor } from '../support/nodes.js'
import type { CapacityResponse } from '../../src/api/capacity-routes.js'

describe('capacity API', () => {
  it('lists own record and seen providers', async () => {
    const provider = await startTestNode({}, { capacity: new ManualCapacity(), advertiserTiming: { debounceMs: 100, retryMs: 200 } })
    const requester = await startTestNode({ bootstrap: provider.addresses(), share: false })
    let seen: CapacityResponse | undefined
    await waitFor(async () => {
      seen = await (await fetch(`${requester.api.url}/api/v1/capacity?refresh=1`)).json() as CapacityResponse
      return seen.network.providers.length === 1
    }, 30_000, 'the requester to see the provider')

    const own = await (await fetch(`${provider.api.url}/api/v1/capacity`)).json() as CapacityResponse

    expect(own.self?.peerId).toBe(provider.peerId.toString())
    expect(own.self?.encryptionKey).toBe(Buffer.from(provider.encryptionKey.publicKey).toString('hex'))
    expect(seen?.self).toBeNull()
    expect(seen?.network.providers[0]?.peerId).toBe(provider.peerId.toString())
    expect(seen?.network.totals.freeCpus).toBe(2)
  })

  it('prints providers for a person', async () => {
    const provider = await startTestNode({}, { capacity: new ManualCapacity(), advertiserTiming: { debounceMs: 100, retryMs: 200 } })
    const requester = await startTestNode({ bootstrap: provider.addresses(), share: false })
    await waitFor(async () => {
      const seen = await (await fetch(`${requester.api.url}/api/v1/capacity?refresh=1`)).json() as CapacityResponse
      return seen.network.providers.length === 1
    }, 30_000, 'the requester to see the provider')

    const result = await runCli(['capacity', '--api-port', String(requester.api.port)])

    expect(result.code).toBe(0)
    expect(result.stdout).toContain('this node: not sharing')
    expect(result.stdout).toContain('network: 1 provider seen, 2 of 2 CPUs free')
    expect(result.stdout).toContain(provider.peerId.toString())
  })
})
