import { z } from 'zod'
import { priceSchema } from '../credits/receipt.js'
import { EmdxError } from '../node/errors.js'
import { bytesSchema, peerIdSchema, timestampSchema } from '../records/schema.js'
import { decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { HASH_BYTES } from '../records/hash.js'
import { SIGNATURE_BYTES, verifySignature } from '../records/signature.js'
import type { Signer } from '../records/signature.js'

/** A capacity record that is malformed, wrongly signed, stale or too large. */
export class CapacityRecordError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_CAPACITY_RECORD', message, options)
  }
}

/** Version of the stage protocol and records this node speaks; records of other versions are incompatible. */
export const PROTOCOL_VERSION = 1

/**
 * Upper bound of a signed capacity record. A full record with 16 images,
 * 8 agents and 8 addresses is about 2 KiB; anything larger is rejected
 * before it is decoded.
 */
export const MAX_CAPACITY_RECORD_BYTES = 4096

/** The DHT key namespace of capacity records: `/emdx/cap/<peer id>`. */
export const CAPACITY_KEY_PREFIX = '/emdx/cap/'

/**
 * How isolated a stage is from the host: `gvisor` (a user-space kernel,
 * Docker with runsc), `container` (Docker with runc: namespaces, seccomp,
 * no capabilities) or `namespaces` (bubblewrap: namespaces and resource limits).
 */
export const isolationSchema = z.enum(['gvisor', 'container', 'namespaces'])
export type Isolation = z.infer<typeof isolationSchema>

export const runtimeSchema = z.enum(['runsc', 'runc', 'bwrap'])
export type Runtime = z.infer<typeof runtimeSchema>

const name = z.string().min(1).max(128).regex(/^[\w./:@+-]+$/, 'expected a name of letters, digits and ./:@+-_')

export const capacityRecordSchema = z.strictObject({
  version: z.number().int().min(1).max(1000),
  peerId: peerIdSchema,
  /** Grows with every record the peer issues; the highest one wins. */
  seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  issuedAt: timestampSchema,
  expiresAt: timestampSchema,
  cpus: z.strictObject({ free: z.number().nonnegative().max(4096), total: z.number().nonnegative().max(4096) }),
  memory: z.strictObject({ freeBytes: z.number().int().nonnegative(), totalBytes: z.number().int().nonnegative() }),
  runtime: z.strictObject({ name: runtimeSchema, isolation: isolationSchema }),
  images: z.array(name).max(16),
  agents: z.array(name).max(8),
  arch: name,
  price: priceSchema,
  /** X25519 public key that stage payloads for this peer are sealed to. */
  encryptionKey: bytesSchema(32),
  /** Sequence number and hash of the peer's latest ledger entry, when it has one. */
  receiptHead: z.strictObject({
    seq: z.number().int().nonnegative(),
    hash: bytesSchema(HASH_BYTES)
  }).nullable(),
  addresses: z.array(z.string().min(1).max(256)).max(8)
}).refine(record => record.expiresAt > record.issuedAt, 'expiresAt must be after issuedAt')
  .refine(record => record.cpus.free <= record.cpus.total, 'free CPUs must not exceed total CPUs')
  .refine(record => record.memory.freeBytes <= record.memory.totalBytes, 'free memory must not exceed total memory')

export type CapacityRecord = z.infer<typeof capacityRecordSchema>

const envelopeSchema = z.strictObject({
  record: bytesSchema(),
  signature: bytesSchema(SIGNATURE_BYTES)
})

export function capacityKey (peerId: string): Uint8Array {
  return new TextEncoder().encode(`${CAPACITY_KEY_PREFIX}${peerId}`)
}

/** Encodes and signs a record as the peer it names; the result is what the DHT stores. */
export function signCapacityRecord (record: CapacityRecord, signer: Signer): Uint8Array {
  if (record.peerId !== signer.peerId) {
    throw new CapacityRecordError(`record names peer ${record.peerId}, but the signer is ${signer.peerId}`)
  }
  const bytes = encodeCanonical(capacityRecordSchema.parse(record))
  const signed = encodeCanonical({ record: bytes, signature: signer.sign('capacity-record', bytes) })
  if (signed.byteLength > MAX_CAPACITY_RECORD_BYTES) {
    throw new CapacityRecordError(`capacity record is ${signed.byteLength} bytes, over the limit of ${MAX_CAPACITY_RECORD_BYTES}; advertise fewer images, agents or addresses`)
  }
  return signed
}

/**
 * Decodes a signed record and checks its size, form and signature, but not
 * its times: callers decide what "now" is (see `checkFreshness`).
 */
export function openCapacityRecord (signed: Uint8Array): CapacityRecord {
  if (signed.byteLength > MAX_CAPACITY_RECORD_BYTES) {
    throw new CapacityRecordError(`capacity record is ${signed.byteLength} bytes, over the limit of ${MAX_CAPACITY_RECORD_BYTES}`)
  }

  let envelope: z.infer<typeof envelopeSchema>
  let record: CapacityRecord
  try {
    envelope = envelopeSchema.parse(decodeCanonical(signed, MAX_CAPACITY_RECORD_BYTES))
    record = capacityRecordSchema.parse(decodeCanonical(envelope.record, MAX_CAPACITY_RECORD_BYTES))
  } catch (err) {
    const detail = err instanceof z.ZodError ? z.prettifyError(err) : (err as Error).message
    throw new CapacityRecordError(`capacity record is malformed: ${detail}`, { cause: err })
  }

  if (!verifySignature('capacity-record', envelope.record, envelope.signature, record.peerId)) {
    throw new CapacityRecordError(`capacity record of ${record.peerId} has an invalid signature`)
  }
  return record
}

/**
 * How far a peer's clock may be off from ours. A record issued up to this far
 * in the future, or expired up to this long ago, is still accepted.
 */
export const CLOCK_SKEW_MS = 60_000

/** Rejects a record that has expired or was issued in the future, allowing for clock skew. */
export function checkFreshness (record: CapacityRecord, now: number): void {
  if (record.expiresAt + CLOCK_SKEW_MS < now) {
    throw new CapacityRecordError(`capacity record of ${record.peerId} expired at ${new Date(record.expiresAt).toISOString()}`)
  }
  if (record.issuedAt - CLOCK_SKEW_MS > now) {
    throw new CapacityRecordError(`capacity record of ${record.peerId} is issued in the future (${new Date(record.issuedAt).toISOString()}); check the peer's clock`)
  }
}
