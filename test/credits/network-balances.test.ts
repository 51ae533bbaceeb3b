import { describe, expect, it } from 'vitest'
import { STARTING_GRANT } from '../../src/credits/admission.js'
import { ensureBuilt } from '../helpers/build.js'
import { runCli } from '../support/cli.js'
import { dispatchAgentStage, dispatchCommandStage, honestRunner, startProvider, waitForProviders } from '../support/scripted-network.js'
import type { CreditsSummary, ReceiptSummary } from '../../src/api/credits-routes.js'
import type { EmdxNode } from '../../src/node/node.js'

// A devnet of four nodes that share and request, running many stages with
// spot checks on (canaries and duplicate runs are paid like stages). The
// sum of all balances stays the sum of the grants, and each node's balance
// is what the receipts its peers keep add up to. Read through the HTTP API
// and the CLI, as a person would.

const NODES = 4
const ROUNDS = 6

interface Receipts {
  receipts: ReceiptSummary[]
  verification: { valid: boolean, entries: number, balance: number, problem?: string }
}

async function getJson<T> (node: EmdxNode, path: string): Promise<T> {
  const response = await fetch(`${node.api.url}${path}`)
  if (!response.ok) {
    throw new Error(`GET ${path} failed with ${response.status}: ${await response.text()}`)
  }
  return await response.json() as T
}

/** Computes a node's balance from its peers' receipts: the grant, plus what they paid it, less what it paid them. */
function balanceFromPeers (peerId: string, peersReceipts: ReceiptSummary[][]): number {
  let balance = STARTING_GRANT
  for (const receipts of peersReceipts) {
    for (const receipt of receipts.filter(entry => entry.counterparty === peerId)) {
      balance -= receipt.delta
    }
  }
  return balance
}

describe('devnet balances', () => {
  it('add up after many stages', async () => {
    await ensureBuilt()
    const nodes: EmdxNode[] = []
    for (let index = 0; index < NODES; index++) {
      nodes.push(await startProvider(honestRunner(`node ${index}`), nodes[0]))
    }
    for (const node of nodes) {
      await waitForProviders(node, NODES - 1)
    }

    let stages = 0
    for (let round = 0; round < ROUNDS; round++) {
      for (const [index, node] of nodes.entries()) {
        if ((round + index) % 2 === 0) {
          await dispatchAgentStage(node, `idea ${round}.${index}`)
        } else {
          await dispatchCommandStage(node, ['echo', `command ${round}.${index}`])
        }
        stages++
      }
    }

    const credits = await Promise.all(nodes.map(async node => await getJson<CreditsSummary>(node, '/api/v1/credits')))
    const receipts = await Promise.all(nodes.map(async node => await getJson<Receipts>(node, '/api/v1/receipts?limit=1000&verify=true')))
    const entries = receipts.reduce((sum, each) => sum + each.verification.entries, 0)

    expect(stages).toBe(NODES * ROUNDS)
    // Every stage has a receipt on both sides; checks add more.
    expect(entries).toBeGreaterThanOrEqual(2 * stages)
    expect(credits.reduce((sum, each) => sum + each.balance, 0)).toBe(NODES * STARTING_GRANT)
    for (const [index, node] of nodes.entries()) {
      const peersReceipts = receipts.filter((_, other) => other !== index).map(each => each.receipts)
      expect(receipts[index]?.verification.valid).toBe(true)
      expect(receipts[index]?.verification.balance).toBe(credits[index]?.balance)
      expect(credits[index]?.balance).toBe(balanceFromPeers(node.peerId.toString(), peersReceipts))
    }

    const cli = await runCli(['credits', '--json', '--api-url', nodes[0]?.api.url ?? ''])
    const verify = await runCli(['receipts', '--verify', '--api-url', nodes[0]?.api.url ?? ''])
    expect((JSON.parse(cli.stdout) as CreditsSummary).balance).toBe(credits[0]?.balance)
    expect(verify.code).toBe(0)
    expect(verify.stdout).toContain(`ledger verified: ${receipts[0]?.verification.entries} entries`)
  }, 180_000)
})
