import { afterEach, describe, expect, it } from 'vitest'
import { Ledger, LedgerCorruptError } from '../../src/credits/ledger.js'
import { encodeCanonical } from '../../src/records/canonical.js'
import { openTestNode, settleJob } from '../helpers/credits.js'
import type { TestNode } from '../helpers/credits.js'
import type { AbstractSublevel } from 'abstract-level'
import type { Level } from 'level'

// Corrupt ledger data or a wrong cached balance stops the ledger from
// opening with an error naming the database, and nothing is rewritten.

const opened: TestNode[] = []

afterEach(async () => {
  for (const each of opened.splice(0)) {
    await each.db.cleanup()
  }
})

async function nodeWithEntries (): Promise<TestNode> {
  const executor = await openTestNode()
  const requester = await openTestNode()
  opened.push(executor, requester)
  await settleJob(executor, requester)
  await settleJob(executor, requester)
  return executor
}

function ledgerStore (node: TestNode): AbstractSublevel<Level<string, Uint8Array>, string | Buffer | Uint8Array, string, Uint8Array> {
  return node.db.database.sublevel<string, Uint8Array>('ledger', { keyEncoding: 'utf8', valueEncoding: 'view' })
}

async function reopen (node: TestNode): Promise<Ledger> {
  return await Ledger.open({ database: node.db.database, signer: node.signer, location: node.db.location })
}

describe('ledger corruption', () => {
  it('rejects a wrong cached balance', async () => {
    const node = await nodeWithEntries()
    const head = node.ledger.head()
    await ledgerStore(node).put('head', encodeCanonical({ seq: head.seq, hash: head.hash, earned: 999_999, spent: 0 }))

    const error = await reopen(node).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(LedgerCorruptError)
    expect((error as LedgerCorruptError).file).toBe(node.db.location)
    expect((error as Error).message).toMatch(/cached ledger balance in .* does not match its chain/)
    expect((error as Error).message).toMatch(/restore the data directory from a backup/)
  })

  it('rejects an undecodable entry', async () => {
    const node = await nodeWithEntries()
    await ledgerStore(node).put('e:0000000000000001', new Uint8Array([0xff, 0x00, 0x13]))

    const error = await reopen(node).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(LedgerCorruptError)
    expect((error as Error).message).toContain(node.db.location)
    expect((error as Error).message).toMatch(/e:0000000000000001 .* cannot be decoded/)
  })

  it('rejects a missing entry', async () => {
    const node = await nodeWithEntries()
    await ledgerStore(node).del('e:0000000000000000')

    const error = await reopen(node).catch((err: unknown) => err)

    expect(error).toBeInstanceOf(LedgerCorruptError)
    expect((error as Error).message).toMatch(/chain has a gap/)
  })

  it('leaves corrupt data in place', async () => {
    const node = await nodeWithEntries()
    const store = ledgerStore(node)
    await store.put('e:0000000000000001', new Uint8Array([0xff]))
    const headBefore = await store.get('head')

    await reopen(node).catch(() => undefined)

    expect([...(await store.get('e:0000000000000001'))!]).toEqual([0xff])
    expect(await store.get('head')).toEqual(headBefore)
  })

  it('verify reports a bad signature', async () => {
    const node = await nodeWithEntries()
    const [newest] = await node.ledger.recent(1)
    const signature = new Uint8Array(newest!.entry.signature)
    signature[0] = (signature[0] ?? 0) ^ 0xff
    await ledgerStore(node).put('e:0000000000000001', encodeCanonical({ entry: { ...newest!.entry, signature }, receipt: newest!.receipt }))

    const report = await (await reopen(node)).verify()

    expect(report.valid).toBe(false)
    expect(report.problem).toMatch(/ledger entry 1 is not signed by its owner/)
  })
})
