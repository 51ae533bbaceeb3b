import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { STARTING_GRANT } from '../../src/credits/admission.js'
import { createSigner } from '../../src/records/signature.js'
import { ensureBuilt } from '../helpers/build.js'
import { newJob, newSigner, signJob } from '../helpers/credits.js'
import type { ChildProcessWithoutNullStreams } from 'node:child_process'
import type { Receipt } from '../../src/credits/receipt.js'
import type { TestJob } from '../helpers/credits.js'

// SIGKILL during a burst of appends, then a restart: the chain must verify
// and, once the counterparties re-deliver the receipts the node did not
// acknowledge, its balance must equal the sum of their receipts.

const fixture = fileURLToPath(new URL('./fixtures/ledger-process.mjs', import.meta.url))
const RECEIPTS = 400

interface LedgerProcess {
  child: ChildProcessWithoutNullStreams
  lines: AsyncIterator<string>
}

async function startLedgerProcess (dataDir: string, keyHex: string): Promise<LedgerProcess> {
  const child = spawn(process.execPath, [fixture, dataDir, keyHex], { stdio: ['pipe', 'pipe', 'pipe'] })
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const first = await lines.next()
  if (first.value !== 'ready') {
    throw new Error(`ledger process did not start: ${String(first.value)}`)
  }
  return { child, lines }
}

function toLine ({ receipt, job }: { receipt: Receipt, job: TestJob }): string {
  const hex = (bytes: Uint8Array | undefined): string => Buffer.from(bytes ?? new Uint8Array()).toString('hex')
  return JSON.stringify({
    receipt: { body: hex(receipt.body), executorSignature: hex(receipt.executorSignature), requesterSignature: hex(receipt.requesterSignature) },
    terms: { ...job.terms, resultHash: hex(job.terms.resultHash) }
  })
}

interface Report { valid: boolean, problem?: string, entries: number, balance: number, jobs: string[] }

async function verifyIn (ledgerProcess: LedgerProcess): Promise<Report> {
  ledgerProcess.child.stdin.write('verify\n')
  for (;;) {
    const next = await ledgerProcess.lines.next()
    if (next.done === true) {
      throw new Error('ledger process exited before it verified')
    }
    if (next.value.startsWith('verified ')) {
      return JSON.parse(next.value.slice('verified '.length)) as Report
    }
  }
}

async function stop (ledgerProcess: LedgerProcess): Promise<void> {
  const exited = new Promise(resolve => ledgerProcess.child.once('exit', resolve))
  ledgerProcess.child.stdin.end()
  await exited
}

describe('ledger after SIGKILL', () => {
  let dataDir: string

  beforeAll(async () => {
    await ensureBuilt()
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-crash-'))
  })

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true })
  })

  it('verifies and matches counterparties', async () => {
    const privateKey = await generateKeyPair('Ed25519')
    const keyHex = Buffer.from(privateKeyToProtobuf(privateKey)).toString('hex')
    const executor = createSigner(privateKey, peerIdFromPrivateKey(privateKey).toString())
    const requesters = [await newSigner(), await newSigner(), await newSigner()]
    const sent = Array.from({ length: RECEIPTS }, (_, index) => {
      const requester = requesters[index % requesters.length]!
      const job = newJob(executor, requester, 1 + (index % 7))
      return { job, receipt: signJob(job, executor, requester) }
    })
    const owed = sent.reduce((sum, { job }) => sum + job.body.credits, 0)

    const first = await startLedgerProcess(dataDir, keyHex)
    first.child.stdin.write(sent.map(toLine).join('\n') + '\n')
    const acknowledged = new Set<string>()
    while (acknowledged.size < RECEIPTS / 4) {
      const next = await first.lines.next()
      if (next.value?.startsWith('appended ') === true) {
        acknowledged.add(next.value.slice('appended '.length))
      }
    }
    const killed = new Promise(resolve => first.child.once('exit', resolve))
    first.child.kill('SIGKILL')
    await killed

    const second = await startLedgerProcess(dataDir, keyHex)
    const afterCrash = await verifyIn(second)
    second.child.stdin.write(sent.map(toLine).join('\n') + '\n')
    const final = await verifyIn(second)
    await stop(second)

    expect(afterCrash.valid).toBe(true)
    expect(afterCrash.entries).toBeLessThan(RECEIPTS)
    expect([...acknowledged].filter(job => !afterCrash.jobs.includes(job))).toEqual([])
    expect(final.valid).toBe(true)
    expect(final.entries).toBe(RECEIPTS)
    expect(final.balance).toBe(STARTING_GRANT + owed)
  })
})
