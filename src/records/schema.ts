import { z } from 'zod'

/**
 * Bytes of a decoded record. Typed as plain `Uint8Array` (not zod's
 * `Uint8Array<ArrayBuffer>`), so that buffers from any source fit.
 */
export function bytesSchema (length?: number): z.ZodType<Uint8Array> {
  const bytes = z.custom<Uint8Array>(value => value instanceof Uint8Array, 'expected bytes')
  if (length === undefined) {
    return bytes
  }
  return bytes.refine(value => value.byteLength === length, `expected ${length} bytes`)
}

/** A peer id as text: base58btc, as libp2p prints Ed25519 peer ids. */
export const peerIdSchema = z.string().min(40).max(100).regex(/^[1-9A-HJ-NP-Za-km-z]+$/, 'expected a base58 peer id')

/** Milliseconds since the Unix epoch, within the range of a JavaScript Date. */
export const timestampSchema = z.number().int().positive().max(8.64e15)
