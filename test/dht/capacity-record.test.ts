import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { encode } from 'cborg'
import { describe, expect, it } from 'vitest'
import { PROTOCOL_VERSION, capacityKey, CLOCK_SKEW_MS, MAX_CAPACITY_RECORD_BYTES, openCapacityRecord, signCapacityRecord } from '../../src/dht/capacity-record.js'
import { createCapacityValidator, selectCapacityRecord, SequenceRegistry } from '../../src/dht/validator.js'
import { decodeCanonical, encodeCanonical } from '../../src/records/canonical.js'
import { createSigner } from '../../src/records/signature.js'
import { defaultSnapshot } from '../support/capacity.js'
import type { CapacityRecord } from '../../src/dht/capacity-record.js'
import type { Signer } from '../../src/records/signature.js'

const NOW = Date.UTC(2026, 11, 4, 12, 0, 0)

async function newSigner (): Promise<Signer> {
  const key = await generateKeyPair('Ed25519')
  return createSigner(key, peerIdFromPrivateKey(key).toString())
}

function recordOf (signer: Signer, changes: Partial<CapacityRecord> = {}): CapacityRecord {
  return {
    ...defaultSnapshot(),
    version: PROTOCOL_VERSION,
    peerId: signer.peerId,
    seq: 1,
    issuedAt: NOW - 1000,
    expiresAt: NOW + 600_000,
    encryptionKey: new Uint8Array(32).fill(7),
    receiptHead: null,
    addresses: ['/ip4/127.0.0.1/tcp/4777'],
    ...changes
  }
}

function validatorAt (now: number, sequences = new SequenceRegistry()): ReturnType<typeof createCapacityValidator> {
  return createCapacityValidator({ sequences, now: () => now })
}

describe('capacity record', () => {
  it('opens what it signed', async () => {
    const signer = await newSigner()
    const record = recordOf(signer)

    const opened = openCapacityRecord(signCapacityRecord(record, signer))

    expect(opened).toEqual(record)
  })

  it('refuses to sign for another peer', async () => {
    const signer = await newSigner()
    const other = await newSigner()

    expect(() => signCapacityRecord(recordOf(other), signer)).toThrow(/names peer/)
  })

  it('rejects more free CPUs than total', async () => {
    const signer = await newSigner()

    expect(() => signCapacityRecord(recordOf(signer, { cpus: { free: 3, total: 2 } }), signer)).toThrow()
  })
})

describe('capacity validator', () => {
  it('accepts a valid record', async () => {
    const signer = await newSigner()
    const validate = validatorAt(NOW)

    expect(() => validate(capacityKey(signer.peerId), signCapacityRecord(recordOf(signer), signer))).not.toThrow()
  })

  it('rejects a bad signature', async () => {
    const signer = await newSigner()
    const signed = signCapacityRecord(recordOf(signer), signer)
    const envelope = { record: encodeCanonical(recordOf(signer, { cpus: { free: 64, total: 64 } })), signature: new Uint8Array(64).fill(1) }
    const forged = encodeCanonical(envelope)

    expect(() => validatorAt(NOW)(capacityKey(signer.peerId), forged)).toThrow(/invalid signature/)
    expect(() => validatorAt(NOW)(capacityKey(signer.peerId), signed)).not.toThrow()
  })

  it('rejects a record whose body was altered', async () => {
    const signer = await newSigner()
    const signed = signCapacityRecord(recordOf(signer), signer)
    const { signature } = openEnvelope(signed)
    const altered = encodeCanonical({ record: encodeCanonical(recordOf(signer, { price: { perCpuSecond: 0, perGibSecond: 0, perThousandTokens: 0 } })), signature })

    expect(() => validatorAt(NOW)(capacityKey(signer.peerId), altered)).toThrow(/invalid signature/)
  })

  it('rejects a key that is not the signer', async () => {
    const signer = await newSigner()
    const victim = await newSigner()

    expect(() => validatorAt(NOW)(capacityKey(victim.peerId), signCapacityRecord(recordOf(signer), signer))).toThrow(/is signed by/)
  })

  it('rejects an old sequence number', async () => {
    const signer = await newSigner()
    const validate = validatorAt(NOW)
    validate(capacityKey(signer.peerId), signCapacityRecord(recordOf(signer, { seq: 10 }), signer))

    expect(() => validate(capacityKey(signer.peerId), signCapacityRecord(recordOf(signer, { seq: 9 }), signer))).toThrow(/older than 10/)
  })

  it('rejects a past expiry', async () => {
    const signer = await newSigner()
    const record = recordOf(signer, { issuedAt: NOW - 3_600_000, expiresAt: NOW - CLOCK_SKEW_MS - 1 })

    expect(() => validatorAt(NOW)(capacityKey(signer.peerId), signCapacityRecord(record, signer))).toThrow(/expired/)
  })

  it('allows expiry within the clock skew', async () => {
    const signer = await newSigner()
    const record = recordOf(signer, { issuedAt: NOW - 3_600_000, expiresAt: NOW - CLOCK_SKEW_MS + 1000 })

    expect(() => validatorAt(NOW)(capacityKey(signer.peerId), signCapacityRecord(record, signer))).not.toThrow()
  })

  it('rejects a record from the future', async () => {
    const signer = await newSigner()
    const record = recordOf(signer, { issuedAt: NOW + CLOCK_SKEW_MS + 1000, expiresAt: NOW + 3_600_000 })

    expect(() => validatorAt(NOW)(capacityKey(signer.peerId), signCapacityRecord(record, signer))).toThrow(/in the future/)
  })

  it('rejects an oversized record', async () => {
    const signer = await newSigner()
    const body = encodeCanonical({ ...recordOf(signer), padding: new Uint8Array(MAX_CAPACITY_RECORD_BYTES) })
    const oversized = encodeCanonical({ record: body, signature: signer.sign('capacity-record', body) })

    expect(() => validatorAt(NOW)(capacityKey(signer.peerId), oversized)).toThrow(/over the limit/)
  })

  it('rejects non-canonical CBOR', async () => {
    const signer = await newSigner()
    const body = encodeCanonical(recordOf(signer))
    // The same map with its keys in reverse order: valid CBOR, not canonical.
    const loose = Buffer.concat([
      Buffer.from([0xa2]),
      encode('signature'), encode(signer.sign('capacity-record', body)),
      encode('record'), encode(body)
    ])
    expect(() => validatorAt(NOW)(capacityKey(signer.peerId), loose)).toThrow(/not in canonical form/)
  })

  it('rejects a signature made for a receipt', async () => {
    const signer = await newSigner()
    const body = encodeCanonical(recordOf(signer))
    const crossDomain = encodeCanonical({ record: body, signature: signer.sign('receipt', body) })

    expect(() => validatorAt(NOW)(capacityKey(signer.peerId), crossDomain)).toThrow(/invalid signature/)
  })
})

describe('capacity selector', () => {
  it('chooses the highest sequence number', async () => {
    const signer = await newSigner()
    const records = [3, 7, 5].map(seq => signCapacityRecord(recordOf(signer, { seq }), signer))

    expect(selectCapacityRecord(capacityKey(signer.peerId), records)).toBe(1)
  })

  it('passes over undecodable records', async () => {
    const signer = await newSigner()
    const records = [new Uint8Array([1, 2, 3]), signCapacityRecord(recordOf(signer, { seq: 2 }), signer)]

    expect(selectCapacityRecord(capacityKey(signer.peerId), records)).toBe(1)
  })
})

function openEnvelope (signed: Uint8Array): { record: Uint8Array, signature: Uint8Array } {
  return decodeCanonical(signed, MAX_CAPACITY_RECORD_BYTES) as { record: Uint8Array, signature: Uint8Array }
}
