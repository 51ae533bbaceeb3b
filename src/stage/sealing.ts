import { createHash } from 'node:crypto'
import sodium from 'sodium-native'
import nacl from 'tweetnacl'
import { EmdxError } from '../node/errors.js'

/**
 * Sealing of stage payloads and results: NaCl box (X25519, XSalsa20,
 * Poly1305) from a fresh ephemeral key to the recipient's X25519 key, so only
 * the recipient can open it. Large data is cut into chunks; each chunk's
 * nonce is derived from the job id, the purpose, the chunk's index, the
 * chunk count and the total length, so a chunk that is dropped, reordered,
 * replayed into another job or cut short fails authentication.
 *
 * Everything slow is native libsodium: the ephemeral key pair, the X25519
 * scalar multiplication and the bulk `crypto_secretbox_easy`. The step from
 * the X25519 secret to the box key (HSalsa20, what `crypto_box_beforenm`
 * does and sodium-native does not expose) is tweetnacl's, and fast. The
 * bytes are those of `nacl.box`; tweetnacl alone took about 0.8 ms per key
 * pair or key agreement, four of each per stage (see docs/benchmarks.md).
 */

/** A sealed message that cannot be opened: wrong key, tampered, reordered or truncated. */
export class SealError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_SEAL', message, options)
  }
}

export type SealPurpose = 'payload' | 'result'

/** Plaintext bytes per chunk; the last chunk may be shorter. */
export const CHUNK_BYTES = 256 * 1024
export const MAC_BYTES = 16
export const KEY_BYTES = 32

/** What the recipient needs, besides its secret key, to open the chunks. */
export interface SealHeader {
  ephemeralKey: Uint8Array
  totalBytes: number
  chunkCount: number
}

export interface SealContext {
  jobId: string
  purpose: SealPurpose
}

function chunkCountFor (totalBytes: number): number {
  return Math.max(1, Math.ceil(totalBytes / CHUNK_BYTES))
}

function chunkNonce (context: SealContext, header: Omit<SealHeader, 'ephemeralKey'>, index: number): Uint8Array {
  const hash = createHash('sha256')
  hash.update(`emdx/seal/v1\0${context.purpose}\0${context.jobId}\0`)
  const numbers = Buffer.alloc(16)
  numbers.writeUInt32BE(index, 0)
  numbers.writeUInt32BE(header.chunkCount, 4)
  numbers.writeBigUInt64BE(BigInt(header.totalBytes), 8)
  hash.update(numbers)
  return new Uint8Array(hash.digest().subarray(0, nacl.box.nonceLength))
}

/** The sixteen zero bytes HSalsa20 takes as its input when it derives a box key. */
const HSALSA20_ZERO_INPUT = new Uint8Array(16)

/** HSalsa20's constant, "expand 32-byte k". */
const SIGMA = new TextEncoder().encode('expand 32-byte k')

/**
 * tweetnacl's HSalsa20, which its type declarations leave out although the
 * library exports it (as `lowlevel.crypto_core_hsalsa20`).
 */
const hsalsa20 = (nacl as unknown as { lowlevel: { crypto_core_hsalsa20: (out: Uint8Array, input: Uint8Array, key: Uint8Array, constant: Uint8Array) => number } }).lowlevel.crypto_core_hsalsa20

/** The same key as NaCl's `crypto_box_beforenm` (tweetnacl's `box.before`). */
function sharedKey (publicKey: Uint8Array, secretKey: Uint8Array): Uint8Array {
  if (publicKey.byteLength !== KEY_BYTES || secretKey.byteLength !== KEY_BYTES) {
    throw new SealError(`X25519 keys must be ${KEY_BYTES} bytes`)
  }
  const secret = Buffer.alloc(KEY_BYTES)
  try {
    sodium.crypto_scalarmult(secret, secretKey, publicKey)
  } catch (err) {
    // libsodium rejects public keys of low order, whose shared secret is zero.
    throw new SealError('invalid X25519 public key: it is a low-order point, whose shared secret is zero; the peer must send its real key', { cause: err })
  }
  const key = new Uint8Array(KEY_BYTES)
  hsalsa20(key, HSALSA20_ZERO_INPUT, secret, SIGMA)
  secret.fill(0)
  return key
}

/** Makes a fresh X25519 key pair for one sealed message. */
function ephemeralKeyPair (): { publicKey: Uint8Array, secretKey: Uint8Array } {
  const publicKey = Buffer.alloc(KEY_BYTES)
  const secretKey = Buffer.alloc(KEY_BYTES)
  sodium.crypto_box_keypair(publicKey, secretKey)
  return { publicKey: new Uint8Array(publicKey), secretKey }
}

/**
 * Seals data to a recipient's X25519 public key. Returns the header to send
 * first and the chunks to send after it, in order.
 */
export function seal (data: Uint8Array, recipientKey: Uint8Array, context: SealContext): { header: SealHeader, chunks: Uint8Array[] } {
  const ephemeral = ephemeralKeyPair()
  const key = sharedKey(recipientKey, ephemeral.secretKey)
  const header: SealHeader = { ephemeralKey: ephemeral.publicKey, totalBytes: data.byteLength, chunkCount: chunkCountFor(data.byteLength) }

  const chunks: Uint8Array[] = []
  for (let index = 0; index < header.chunkCount; index++) {
    const plain = data.subarray(index * CHUNK_BYTES, Math.min(data.byteLength, (index + 1) * CHUNK_BYTES))
    const sealed = new Uint8Array(plain.byteLength + MAC_BYTES)
    sodium.crypto_secretbox_easy(sealed, plain, chunkNonce(context, header, index), key)
    chunks.push(sealed)
  }
  ephemeral.secretKey.fill(0)
  key.fill(0)
  return { header, chunks }
}

/**
 * Opens chunks one at a time as they arrive, checking each before keeping it,
 * and gives the data back once the last one is in. It never holds more than
 * `maxTotalBytes`, whatever the header claims.
 */
export class ChunkOpener {
  private readonly key: Uint8Array
  private readonly header: SealHeader
  private readonly context: SealContext
  private readonly data: Uint8Array
  private next = 0

  constructor (header: SealHeader, recipientSecretKey: Uint8Array, context: SealContext, maxTotalBytes: number) {
    if (!Number.isSafeInteger(header.totalBytes) || header.totalBytes < 0 || header.totalBytes > maxTotalBytes) {
      throw new SealError(`sealed ${context.purpose} of ${header.totalBytes} bytes is over the limit of ${maxTotalBytes}`)
    }
    if (header.chunkCount !== chunkCountFor(header.totalBytes)) {
      throw new SealError(`sealed ${context.purpose} claims ${header.chunkCount} chunks for ${header.totalBytes} bytes`)
    }
    this.key = sharedKey(header.ephemeralKey, recipientSecretKey)
    this.header = header
    this.context = context
    this.data = new Uint8Array(header.totalBytes)
  }

  get complete (): boolean {
    return this.next === this.header.chunkCount
  }

  /** Opens the next chunk; throws SealError if it is not the one expected or fails authentication. */
  open (ciphertext: Uint8Array): void {
    if (this.complete) {
      throw new SealError(`sealed ${this.context.purpose} has more chunks than the ${this.header.chunkCount} announced`)
    }
    const offset = this.next * CHUNK_BYTES
    const expected = Math.min(CHUNK_BYTES, this.header.totalBytes - offset)
    if (ciphertext.byteLength !== expected + MAC_BYTES) {
      throw new SealError(`chunk ${this.next} of the sealed ${this.context.purpose} has ${ciphertext.byteLength} bytes, expected ${expected + MAC_BYTES}`)
    }

    const plain = this.data.subarray(offset, offset + expected)
    if (!sodium.crypto_secretbox_open_easy(plain, ciphertext, chunkNonce(this.context, this.header, this.next), this.key)) {
      throw new SealError(`chunk ${this.next} of the sealed ${this.context.purpose} failed authentication: sealed to another key, tampered with, or out of order`)
    }
    this.next++
  }

  /** The opened data; throws SealError unless every chunk arrived. */
  finish (): Uint8Array {
    if (!this.complete) {
      throw new SealError(`sealed ${this.context.purpose} ended after ${this.next} of ${this.header.chunkCount} chunks`)
    }
    this.key.fill(0)
    return this.data
  }
}

/** Opens a whole sealed message at once; for tests and small messages. */
export function open (header: SealHeader, chunks: Uint8Array[], recipientSecretKey: Uint8Array, context: SealContext, maxTotalBytes: number): Uint8Array {
  const opener = new ChunkOpener(header, recipientSecretKey, context, maxTotalBytes)
  for (const chunk of chunks) {
    opener.open(chunk)
  }
  return opener.finish()
}
