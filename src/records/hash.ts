import { createHash } from 'node:crypto'

export const HASH_BYTES = 32

/** SHA-256 of the bytes; the hash of every chained or compared record. */
export function sha256 (bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(bytes).digest())
}

export function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}
