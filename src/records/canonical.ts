import { decode, encode } from 'cborg'
import { EmdxError } from '../node/errors.js'

/** Bytes that are not the one canonical CBOR encoding of a value. */
export class EncodingError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_ENCODING', message, options)
  }
}

/**
 * Encodes a value as deterministic CBOR: map keys sorted, the shortest form
 * of every number, properties whose value is undefined left out. The same
 * value always gives the same bytes, so signatures and hashes can cover them.
 */
export function encodeCanonical (value: unknown): Uint8Array {
  return encode(value, { ignoreUndefinedProperties: true })
}

/**
 * Decodes bytes that must be the canonical encoding of their value. Anything
 * else (indefinite lengths, duplicate keys, NaN, unsorted keys, longer number
 * forms, trailing bytes) is an EncodingError, so that no two byte strings can
 * carry one signed value. The result is untyped: validate it before use.
 */
export function decodeCanonical (bytes: Uint8Array, maxBytes: number): unknown {
  if (bytes.byteLength > maxBytes) {
    throw new EncodingError(`encoded value is ${bytes.byteLength} bytes, over the limit of ${maxBytes}`)
  }

  let value: unknown
  try {
    value = decode(bytes, {
      strict: true,
      rejectDuplicateMapKeys: true,
      allowIndefinite: false,
      allowUndefined: false,
      allowNaN: false,
      allowInfinity: false,
      allowBigInt: false,
      useMaps: false
    })
  } catch (err) {
    throw new EncodingError(`invalid CBOR: ${(err as Error).message}`, { cause: err })
  }

  const again = encodeCanonical(value)
  if (!bytesEqual(again, bytes)) {
    throw new EncodingError('CBOR is valid but not in canonical form')
  }
  return value
}

export function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) {
    return false
  }
  for (let index = 0; index < a.byteLength; index++) {
    if (a[index] !== b[index]) {
      return false
    }
  }
  return true
}
