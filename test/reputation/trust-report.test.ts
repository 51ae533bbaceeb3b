import { describe, expect, it } from 'vitest'
import { decodeCanonical, encodeCanonical } from '../../src/records/canonical.js'
import { MAX_TRUST_REPORT_BYTES, MAX_TRUST_REPORT_PEERS, createTrustReport, decodeTrustReport } from '../../src/reputation/trust-report.js'
import { newSigner } from '../helpers/credits.js'

async function peerIds (count: number): Promise<string[]> {
  return await Promise.all(Array.from({ length: count }, async () => (await newSigner()).peerId))
}

describe('trust report', () => {
  it('round-trips the local trust', async () => {
    const reporter = await newSigner()
    const [a, b] = await peerIds(2)

    const report = decodeTrustReport(createTrustReport(reporter, new Map([[a!, 0.75], [b!, 0.25]]), 1_700_000_000_000))

    expect(report.reporter).toBe(reporter.peerId)
    expect(report.trust.get(a!)).toBe(0.75)
    expect(report.trust.get(b!)).toBe(0.25)
  })

  it('keeps only the most trusted peers', async () => {
    const reporter = await newSigner()
    const peers = await peerIds(MAX_TRUST_REPORT_PEERS + 20)
    const vector = new Map(peers.map((peer, index) => [peer, index + 1]))

    const bytes = createTrustReport(reporter, vector, 1_700_000_000_000)
    const report = decodeTrustReport(bytes)

    expect(report.trust.size).toBe(MAX_TRUST_REPORT_PEERS)
    expect(report.trust.has(peers[0]!)).toBe(false)
    expect(bytes.byteLength).toBeLessThanOrEqual(MAX_TRUST_REPORT_BYTES)
  })

  it('rejects a forged signature', async () => {
    const reporter = await newSigner()
    const impostor = await newSigner()
    const [peer] = await peerIds(1)
    const signed = decodeCanonical(createTrustReport(reporter, new Map([[peer!, 1]]), 1_700_000_000_000), MAX_TRUST_REPORT_BYTES) as { body: Uint8Array }

    const forged = encodeCanonical({ body: signed.body, signature: impostor.sign('trust-report', signed.body) })

    expect(() => decodeTrustReport(forged)).toThrow(/not signed by its reporter/)
  })

  it('rejects an oversized report', () => {
    const bytes = new Uint8Array(MAX_TRUST_REPORT_BYTES + 1024)

    expect(() => decodeTrustReport(bytes)).toThrow(/over the limit/)
  })

  it('rejects weights above one', async () => {
    const reporter = await newSigner()
    const [a, b] = await peerIds(2)
    const body = encodeCanonical({ version: 1, reporter: reporter.peerId, time: 1, trust: [[a, 900_000], [b, 900_000]].sort() })

    const bytes = encodeCanonical({ body, signature: reporter.sign('trust-report', body) })

    expect(() => decodeTrustReport(bytes)).toThrow(/weights add up to/)
  })

  it('rejects unsorted peers', async () => {
    const reporter = await newSigner()
    const [a, b] = (await peerIds(2)).sort()
    const body = encodeCanonical({ version: 1, reporter: reporter.peerId, time: 1, trust: [[b, 1], [a, 1]] })

    const bytes = encodeCanonical({ body, signature: reporter.sign('trust-report', body) })

    expect(() => decodeTrustReport(bytes)).toThrow(/sorted and unique/)
  })

  it('rejects garbage bytes', () => {
    expect(() => decodeTrustReport(new Uint8Array([1, 2, 3]))).toThrow(/trust report is not valid/)
  })
})
