import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { STARTING_GRANT } from '../../src/credits/admission.js'
import { LedgerCorruptError } from '../../src/credits/ledger.js'
import { loadConfig } from '../../src/node/config.js'
import { silentLogger } from '../../src/node/logger.js'
import { EmdxNode } from '../../src/node/node.js'
import { encodeCanonical } from '../../src/records/canonical.js'
import { ensureBuilt } from '../helpers/build.js'
import type { CreditsSummary } from '../../src/api/credits-routes.js'

// The ledger and reputation inside a started node: the API routes, the
// CLI commands as a real process, and a start refused over a corrupt ledger.

const bin = fileURLToPath(new URL('../../bin/emdx-node.js', import.meta.url))

async function startNode (dataDir: string): Promise<EmdxNode> {
  const config = await loadConfig(dataDir, { port: '0', apiPort: '0', listenHost: '127.0.0.1', mdns: false })
  return await EmdxNode.start({ config, logger: silentLogger(), skipSandbox: true })
}

describe('node credits', () => {
  let dataDir: string
  let node: EmdxNode

  beforeAll(async () => {
    await ensureBuilt()
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-node-credits-'))
    node = await startNode(dataDir)
  })

  afterAll(async () => {
    await node?.stop()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('serves the balance', async () => {
    const response = await fetch(`${node.api.url}/api/v1/credits`)
    const credits = await response.json() as CreditsSummary

    expect(credits.balance).toBe(STARTING_GRANT)
    expect(credits.peerId).toBe(node.peerId.toString())
  })

  it('verifies receipts on request', async () => {
    const response = await fetch(`${node.api.url}/api/v1/receipts?verify=true`)
    const body = await response.json() as { receipts: unknown[], verification: { valid: boolean } }

    expect(body.receipts).toEqual([])
    expect(body.verification.valid).toBe(true)
  })

  it('rejects an invalid receipt limit', async () => {
    const response = await fetch(`${node.api.url}/api/v1/receipts?limit=0`)

    expect(response.status).toBe(400)
  })

  it('serves the reputation', async () => {
    const response = await fetch(`${node.api.url}/api/v1/reputation`)
    const body = await response.json() as { peers: unknown[] }

    expect(body.peers).toEqual([])
  })

  it('prints credits from the CLI', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [bin, 'credits', '--json', '--api-url', node.api.url])

    expect((JSON.parse(stdout) as CreditsSummary).balance).toBe(STARTING_GRANT)
  })

  it('verifies receipts from the CLI', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [bin, 'receipts', '--verify', '--api-url', node.api.url])

    expect(stdout).toMatch(/ledger verified: 0 entries/)
  })
})

describe('node with corrupt ledger', () => {
  it('refuses to start', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-node-corrupt-'))
    try {
      const first = await startNode(dataDir)
      const ledgerStore = first.database.sublevel<string, Uint8Array>('ledger', { keyEncoding: 'utf8', valueEncoding: 'view' })
      await ledgerStore.put('head', encodeCanonical({ seq: -1, hash: new Uint8Array(32), earned: 5000, spent: 0 }))
      await first.stop()

      const error = await startNode(dataDir).catch((err: unknown) => err)

      expect(error).toBeInstanceOf(LedgerCorruptError)
      expect((error as LedgerCorruptError).file).toBe(path.join(dataDir, 'db'))
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

describe('node reputation', () => {
  it('keeps local trust across restarts', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-node-reputation-'))
    const provider = '12D3KooWNz2pJvnddrnqTubUC2bjAmPFtifJvfERC1jcNJAzyS3f'
    try {
      const first = await startNode(dataDir)
      first.reputation.recordOutcome(provider, 'completed')
      first.reputation.recordOutcome(provider, 'completed')
      first.reputation.recordOutcome(provider, 'failed')
      await first.stop()

      const second = await startNode(dataDir)
      const score = second.reputation.localScore(provider)
      const outcomes = second.reputation.local.outcomes(provider)
      await second.stop()

      expect(score).toBe(1)
      expect(outcomes).toBe(3)
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
