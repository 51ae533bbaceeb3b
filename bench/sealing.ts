/**
 * Sealing throughput: seal (and open) 1 MiB and 64 MiB payloads with the
 * stage protocol's chunked NaCl box, against Node's built-in
 * ChaCha20-Poly1305 on the same data and chunk size in the same run.
 *
 *   npx tsx bench/sealing.ts [--runs 15]
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import os from 'node:os'
import nacl from 'tweetnacl'
import { CHUNK_BYTES, open, seal } from '../src/stage/sealing.js'
import { summarize } from './support/stats.js'

const runsIndex = process.argv.indexOf('--runs')
const runs = runsIndex >= 0 ? Number(process.argv[runsIndex + 1]) : 15
const recipient = nacl.box.keyPair()
const context = { jobId: '0'.repeat(32), purpose: 'payload' as const }

function chachaSeal (data: Uint8Array, key: Buffer): Array<{ nonce: Buffer, ciphertext: Buffer, tag: Buffer }> {
  const chunks = []
  for (let offset = 0; offset < data.byteLength || offset === 0; offset += CHUNK_BYTES) {
    const nonce = randomBytes(12)
    const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 })
    const ciphertext = Buffer.concat([cipher.update(data.subarray(offset, offset + CHUNK_BYTES)), cipher.final()])
    chunks.push({ nonce, ciphertext, tag: cipher.getAuthTag() })
    if (data.byteLength === 0) {
      break
    }
  }
  return chunks
}

function chachaOpen (chunks: Array<{ nonce: Buffer, ciphertext: Buffer, tag: Buffer }>, key: Buffer): Buffer {
  return Buffer.concat(chunks.map(chunk => {
    const decipher = createDecipheriv('chacha20-poly1305', key, chunk.nonce, { authTagLength: 16 })
    decipher.setAuthTag(chunk.tag)
    return Buffer.concat([decipher.update(chunk.ciphertext), decipher.final()])
  }))
}

function time (work: () => void): number {
  const started = performance.now()
  work()
  return performance.now() - started
}

console.log(`machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, Node.js ${process.version}, ${runs} runs, chunks of ${CHUNK_BYTES / 1024} KiB`)
for (const mebibytes of [1, 64]) {
  const data = randomBytes(mebibytes * 1024 * 1024)
  const key = randomBytes(32)
  const ours = { seal: [] as number[], open: [] as number[] }
  const chacha = { seal: [] as number[], open: [] as number[] }

  for (let run = 0; run < runs; run++) {
    let sealed: ReturnType<typeof seal> | undefined
    ours.seal.push(time(() => { sealed = seal(data, recipient.publicKey, context) }))
    ours.open.push(time(() => { open(sealed!.header, sealed!.chunks, recipient.secretKey, context, data.byteLength) }))

    let chunks: ReturnType<typeof chachaSeal> | undefined
    chacha.seal.push(time(() => { chunks = chachaSeal(data, key) }))
    chacha.open.push(time(() => { chachaOpen(chunks!, key) }))
  }

  const throughput = (ms: number): string => `${(mebibytes / (ms / 1000)).toFixed(0)} MiB/s`
  for (const step of ['seal', 'open'] as const) {
    const mine = summarize(ours[step]).median
    const baseline = summarize(chacha[step]).median
    console.log(`${mebibytes} MiB ${step}: NaCl box chunks median ${mine.toFixed(1)} ms (${throughput(mine)}), ChaCha20-Poly1305 median ${baseline.toFixed(1)} ms (${throughput(baseline)}), ratio ${(mine / baseline).toFixed(2)}x`)
  }
}
