import { z } from 'zod'
import { EmdxError } from '../node/errors.js'
import { decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { HASH_BYTES, sha256 } from '../records/hash.js'
import { SIGNATURE_BYTES, verifySignature } from '../records/signature.js'
import type { Signer } from '../records/signature.js'

/** A ledger entry, chain or fork proof that is malformed, wrongly signed or inconsistent. */
export class LedgerEntryError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_LEDGER_ENTRY', message, options)
  }
}

export const LEDGER_ENTRY_VERSION = 1
/** Upper bound of an encoded entry body; real ones are about 200 bytes. */
export const MAX_LEDGER_ENTRY_BYTES = 1024
/** The `prev` of the first entry (seq 0) of every chain. */
export const GENESIS_PREV: Uint8Array = new Uint8Array(HASH_BYTES)

const peerIdText = z.string().min(40).max(100).regex(/^[1-9A-HJ-NP-Za-km-z]+$/, 'expected a base58 peer id')
const hash = z.instanceof(Uint8Array).refine(bytes => bytes.byteLength === HASH_BYTES, `expected ${HASH_BYTES} bytes`)
const signature = z.instanceof(Uint8Array).refine(bytes => bytes.byteLength === SIGNATURE_BYTES, `expected ${SIGNATURE_BYTES} bytes`)

/**
 * One link of a node's own chain: which receipt it records, on which side,
 * and the credits it moved, in millicredits (positive when the owner earned
 * them as executor, negative when it spent them as requester).
 */
export const ledgerEntryBodySchema = z.strictObject({
  version: z.literal(LEDGER_ENTRY_VERSION),
  owner: peerIdText,
  seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  /** SHA-256 of the previous entry's encoded body; GENESIS_PREV for seq 0. */
  prev: hash,
  receiptHash: hash,
  role: z.enum(['executor', 'requester']),
  delta: z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
  /** When the owner appended it, in ms since the epoch. */
  time: z.number().int().positive().max(8.64e15)
})
// Hashes typed as plain Uint8Array, so that callers may pass any byte array.
export type LedgerEntryBody = Omit<z.infer<typeof ledgerEntryBodySchema>, 'prev' | 'receiptHash'> & { prev: Uint8Array, receiptHash: Uint8Array }

/** A ledger entry as stored and sent: the encoded body and its owner's signature. */
export interface LedgerEntry {
  body: Uint8Array
  signature: Uint8Array
}

export const ledgerEntrySchema = z.strictObject({
  body: z.instanceof(Uint8Array),
  signature
})

/** A ledger entry whose signature has been checked, with its decoded body and hash. */
export interface VerifiedLedgerEntry {
  entry: LedgerEntry
  body: LedgerEntryBody
  hash: Uint8Array
}

/** Encodes and signs an entry body as its owner. */
export function signLedgerEntry (body: LedgerEntryBody, owner: Signer): LedgerEntry {
  if (owner.peerId !== body.owner) {
    throw new LedgerEntryError(`ledger entry names owner ${body.owner}, but the signer is ${owner.peerId}`)
  }
  const bytes = encodeCanonical(ledgerEntryBodySchema.parse(body))
  return { body: bytes, signature: owner.sign('ledger-entry', bytes) }
}

export function decodeLedgerEntryBody (bytes: Uint8Array): LedgerEntryBody {
  let value: unknown
  try {
    value = decodeCanonical(bytes, MAX_LEDGER_ENTRY_BYTES)
  } catch (err) {
    throw new LedgerEntryError(`ledger entry body is not valid: ${(err as Error).message}`, { cause: err })
  }
  const parsed = ledgerEntryBodySchema.safeParse(value)
  if (!parsed.success) {
    throw new LedgerEntryError(`ledger entry body is not valid: ${z.prettifyError(parsed.error)}`)
  }
  return parsed.data
}

/** Computes the entry hash, which chains entries and identifies them in fork proofs. */
export function ledgerEntryHash (entry: LedgerEntry): Uint8Array {
  return sha256(entry.body)
}

/**
 * Checks an entry's form and its owner's signature. Throws a
 * LedgerEntryError naming what is wrong; it does not check the entry's place
 * in a chain or its receipt (see `verifyChainSegment`).
 */
export function verifyLedgerEntry (entry: unknown): VerifiedLedgerEntry {
  const parsed = ledgerEntrySchema.safeParse(entry)
  if (!parsed.success) {
    throw new LedgerEntryError(`ledger entry is malformed: ${z.prettifyError(parsed.error)}`)
  }
  const body = decodeLedgerEntryBody(parsed.data.body)
  if (!verifySignature('ledger-entry', parsed.data.body, parsed.data.signature, body.owner)) {
    throw new LedgerEntryError(`ledger entry ${body.seq} is not signed by its owner ${body.owner}`)
  }
  return { entry: parsed.data, body, hash: sha256(parsed.data.body) }
}
