import { createHash, randomBytes } from 'node:crypto'
import nacl from 'tweetnacl'
import { describe, expect, it } from 'vitest'
import { CHUNK_BYTES, ChunkOpener, open, seal, SealError } from '../../src/stage/sealing.js'

const recipient = nacl.box.keyPair()
const context = { jobId: 'a'.repeat(32), purpose: 'payload' as const }
const limit = 64 * 1024 * 1024

describe('sealing', () => {
  it('round-trips data of several chunks', () => {
    const data = randomBytes(CHUNK_BYTES * 2 + 123)

    const { header, chunks } = seal(data, recipient.publicKey, context)

    expect(chunks).toHaveLength(3)
    expect(Buffer.from(open(header, chunks, recipient.secretKey, context, limit)).equals(data)).toBe(true)
  })

  it('round-trips empty data', () => {
    const { header, chunks } = seal(new Uint8Array(0), recipient.publicKey, context)

    expect(open(header, chunks, recipient.secretKey, context, limit)).toHaveLength(0)
  })

  it('produces NaCl box ciphertext', () => {
    const data = randomBytes(1000)
    const { header, chunks } = seal(data, recipient.publicKey, context)

    const opened = nacl.box.open.after(chunks[0] as Uint8Array, nonceOfFirstChunk(header, context), nacl.box.before(header.ephemeralKey, recipient.secretKey))

    expect(opened === null ? null : Buffer.from(opened).equals(data)).toBe(true)
  })

  it('rejects a low-order recipient key', () => {
    // The all-zero point gives an all-zero shared secret, which anyone could compute.
    expect(() => seal(randomBytes(10), new Uint8Array(32), context)).toThrow(SealError)
    const { header } = seal(randomBytes(10), recipient.publicKey, context)
    expect(() => new ChunkOpener({ ...header, ephemeralKey: new Uint8Array(32) }, recipient.secretKey, context, limit)).toThrow(/low-order/)
  })

  it('rejects data sealed to another key', () => {
    const other = nacl.box.keyPair()
    const { header, chunks } = seal(randomBytes(100), other.publicKey, context)

    expect(() => open(header, chunks, recipient.secretKey, context, limit)).toThrow(/failed authentication/)
  })

  it('rejects a tampered chunk', () => {
    const { header, chunks } = seal(randomBytes(100), recipient.publicKey, context)
    const first = chunks[0] as Uint8Array
    first[20] = (first[20] as number) ^ 1

    expect(() => open(header, chunks, recipient.secretKey, context, limit)).toThrow(SealError)
  })

  it('rejects reordered chunks', () => {
    const { header, chunks } = seal(randomBytes(CHUNK_BYTES * 2), recipient.publicKey, context)

    expect(() => open(header, [chunks[1] as Uint8Array, chunks[0] as Uint8Array], recipient.secretKey, context, limit)).toThrow(/failed authentication/)
  })

  it('rejects a dropped chunk', () => {
    const { header, chunks } = seal(randomBytes(CHUNK_BYTES * 3), recipient.publicKey, context)

    expect(() => open(header, [chunks[0] as Uint8Array, chunks[2] as Uint8Array], recipient.secretKey, context, limit)).toThrow(/failed authentication/)
  })

  it('rejects a missing last chunk', () => {
    const { header, chunks } = seal(randomBytes(CHUNK_BYTES * 2), recipient.publicKey, context)

    expect(() => open(header, chunks.slice(0, 1), recipient.secretKey, context, limit)).toThrow(/ended after 1 of 2 chunks/)
  })

  it('rejects a truncated stream claiming less', () => {
    const { header, chunks } = seal(randomBytes(CHUNK_BYTES * 2), recipient.publicKey, context)
    const shorter = { ...header, totalBytes: CHUNK_BYTES, chunkCount: 1 }

    expect(() => open(shorter, chunks.slice(0, 1), recipient.secretKey, context, limit)).toThrow(/failed authentication/)
  })

  it('rejects a chunk replayed into another job', () => {
    const { header, chunks } = seal(randomBytes(100), recipient.publicKey, context)

    expect(() => open(header, chunks, recipient.secretKey, { ...context, jobId: 'b'.repeat(32) }, limit)).toThrow(/failed authentication/)
  })

  it('rejects a payload opened as a result', () => {
    const { header, chunks } = seal(randomBytes(100), recipient.publicKey, context)

    expect(() => open(header, chunks, recipient.secretKey, { ...context, purpose: 'result' }, limit)).toThrow(/failed authentication/)
  })

  it('rejects a size over the limit before decrypting', () => {
    const { header } = seal(randomBytes(10), recipient.publicKey, context)

    expect(() => new ChunkOpener({ ...header, totalBytes: limit + 1, chunkCount: Math.ceil((limit + 1) / CHUNK_BYTES) }, recipient.secretKey, context, limit)).toThrow(/over the limit/)
  })

  it('rejects a chunk count that does not fit the size', () => {
    const { header } = seal(randomBytes(10), recipient.publicKey, context)

    expect(() => new ChunkOpener({ ...header, chunkCount: 5 }, recipient.secretKey, context, limit)).toThrow(/claims 5 chunks/)
  })

  it('rejects an extra chunk', () => {
    const { header, chunks } = seal(randomBytes(10), recipient.publicKey, context)
    const opener = new ChunkOpener(header, recipient.secretKey, context, limit)
    opener.open(chunks[0] as Uint8Array)

    expect(() => { opener.open(chunks[0] as Uint8Array) }).toThrow(/more chunks than the 1 announced/)
  })
})

/** The nonce of chunk 0, derived the way sealing documents it. */
function nonceOfFirstChunk (header: { totalBytes: number, chunkCount: number }, ctx: typeof context): Uint8Array {
  const hash = createHash('sha256')
  hash.update(`emdx/seal/v1\0${ctx.purpose}\0${ctx.jobId}\0`)
  const numbers = Buffer.alloc(16)
  numbers.writeUInt32BE(0, 0)
  numbers.writeUInt32BE(header.chunkCount, 4)
  numbers.writeBigUInt64BE(BigInt(header.totalBytes), 8)
  hash.update(numbers)
  return new Uint8Array(hash.digest().subarray(0, 24))
}
