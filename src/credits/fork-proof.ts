import { z } from 'zod'
import { bytesEqual, decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { LedgerEntryError, ledgerEntrySchema, verifyLedgerEntry } from './ledger-entry.js'
import type { LedgerEntry } from './ledger-entry.js'

export const FORK_PROOF_VERSION = 1
export const MAX_FORK_PROOF_BYTES = 4096

/**
 * Two ledger entries signed by one owner with the same seq and different
 * hashes. An honest node never signs two entries at one seq, so the pair
 * proves that the owner keeps two histories (for example to spend the same
 * credits twice). Anyone can check it with the owner's peer id alone.
 */
export interface ForkProof {
  owner: string
  seq: number
  /** Ordered by hash, so that every node encodes the same pair to the same bytes. */
  entries: [LedgerEntry, LedgerEntry]
}

const forkProofSchema = z.strictObject({
  version: z.literal(FORK_PROOF_VERSION),
  entries: z.tuple([ledgerEntrySchema, ledgerEntrySchema])
})

/**
 * Checks that two entries prove a fork and returns the proof. Throws a
 * LedgerEntryError when they do not, because of a bad signature, other
 * owners or seqs, or the same entry given twice.
 */
export function createForkProof (first: LedgerEntry, second: LedgerEntry): ForkProof {
  const a = verifyLedgerEntry(first)
  const b = verifyLedgerEntry(second)
  if (a.body.owner !== b.body.owner) {
    throw new LedgerEntryError(`entries of ${a.body.owner} and ${b.body.owner} do not prove a fork: they have different owners`)
  }
  if (a.body.seq !== b.body.seq) {
    throw new LedgerEntryError(`entries ${a.body.seq} and ${b.body.seq} of ${a.body.owner} do not prove a fork: they have different seqs`)
  }
  if (bytesEqual(a.hash, b.hash)) {
    throw new LedgerEntryError(`entry ${a.body.seq} of ${a.body.owner} given twice does not prove a fork`)
  }

  const ordered: [LedgerEntry, LedgerEntry] = compareBytes(a.hash, b.hash) < 0 ? [a.entry, b.entry] : [b.entry, a.entry]
  return { owner: a.body.owner, seq: a.body.seq, entries: ordered }
}

/** Verifies a proof received from anyone; the same checks as `createForkProof`. */
export function verifyForkProof (proof: Pick<ForkProof, 'entries'>): ForkProof {
  return createForkProof(proof.entries[0], proof.entries[1])
}

export function encodeForkProof (proof: ForkProof): Uint8Array {
  return encodeCanonical({ version: FORK_PROOF_VERSION, entries: proof.entries })
}

/** Decodes and verifies a proof; throws a LedgerEntryError when it is malformed or proves nothing. */
export function decodeForkProof (bytes: Uint8Array): ForkProof {
  let value: unknown
  try {
    value = decodeCanonical(bytes, MAX_FORK_PROOF_BYTES)
  } catch (err) {
    throw new LedgerEntryError(`fork proof is not valid: ${(err as Error).message}`, { cause: err })
  }
  const parsed = forkProofSchema.safeParse(value)
  if (!parsed.success) {
    throw new LedgerEntryError(`fork proof is malformed: ${z.prettifyError(parsed.error)}`)
  }
  return verifyForkProof(parsed.data)
}

function compareBytes (a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.byteLength, b.byteLength)
  for (let index = 0; index < length; index++) {
    const difference = (a[index] ?? 0) - (b[index] ?? 0)
    if (difference !== 0) {
      return difference
    }
  }
  return a.byteLength - b.byteLength
}
