import { readFile } from 'node:fs/promises'
import path from 'node:path'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import { STARTING_GRANT } from '../../src/credits/admission.js'
import { CANARY_STAGE } from '../../src/stage/spot-checks.js'
import { STAND_IN_FILE_NAME, STAND_IN_LABEL } from '../../src/standin/messages-api.js'
import { verifyWebhook } from '../../src/webhooks/signature.js'
import { missingBackend, reportMissing } from '../exec/support.js'
import { followCascade, getCascade, receiptsOf, startCascadeNetwork, stopProcess, submitCascade, waitForCascadeEnd } from '../support/cascade-network.js'
import { createEmdxDatabase } from '../support/emdx-db.js'
import { createRepository, gitIn } from '../support/git-repo.js'
import { startReceiver } from '../support/http-receiver.js'
import { runCli } from '../support/cli.js'
import { makeTempDir } from '../support/temp.js'
import type { CreditsSummary } from '../../src/api/credits-routes.js'
import type { CascadeEvent } from '../../src/cascade/events.js'

const missing = await missingBackend('docker')
const TITLE = 'Add a dark mode toggle'
const TRANSFORMS = ['idea→prompt', 'prompt→analyzed', 'analyzed→planned', 'planned→done']

describe.runIf(missing === undefined)('cascades over the network', () => {
  it('runs idea to done on other nodes', async () => {
    const dir = await makeTempDir()
    const emdxDb = createEmdxDatabase(dir, 'cascadeRuns')
    const repo = await createRepository(path.join(dir, 'repo'), { 'README.md': '# settings page\n' })
    const receiver = await startReceiver()
    const network = await startCascadeNetwork({ providers: 3, requesterEnv: { EMDX_DB: emdxDb } })

    const submitted = await submitCascade(network.requester, { content: `${TITLE} to the settings page`, title: TITLE, auto: true, remote: 'p2p', repo, callbackUrl: `${receiver.url}/hooks` })
    const events = await followCascade(network.requester, submitted.id)
    const record = await getCascade(network.requester, submitted.id)
    await receiver.waitFor(5)

    // Every stage ran on a provider, never on the requester.
    const providerIds = network.providers.map(provider => provider.status.peerId)
    expect(record.status).toBe('completed')
    expect(events.at(-1)?.type).toBe('cascade_completed')
    for (const transform of record.transforms) {
      expect(providerIds).toContain(transform.provider)
      expect(transform.provider).not.toBe(network.requester.status.peerId)
    }

    // Four child documents, each the child of the one before, in the EMDX file.
    const db = new Database(emdxDb, { readonly: true })
    const rows = db.prepare('SELECT id, title, parent_id AS parentId, stage, content FROM documents ORDER BY id').all() as Array<{ id: number, title: string, parentId: number | null, stage: string, content: string }>
    const [root, ...children] = rows
    expect(children.map(row => row.title)).toEqual(TRANSFORMS.map(transform => `${TITLE} [${transform}]`))
    expect(children.map(row => row.stage)).toEqual(['prompt', 'analyzed', 'planned', 'done'])
    expect(children.map(row => row.parentId)).toEqual([root?.id, ...children.slice(0, 3).map(row => row.id)])
    expect(children.every(row => row.content.includes(STAND_IN_LABEL))).toBe(true)
    const tagged = db.prepare("SELECT t.name, t.usage_count AS uses FROM tags t WHERE t.name IN ('cascade', 'remote') ORDER BY t.name").all()
    expect(tagged).toEqual([{ name: 'cascade', uses: 5 }, { name: 'remote', uses: 4 }])
    const found = db.prepare('SELECT rowid FROM documents_fts WHERE documents_fts MATCH ? ORDER BY rowid').all('toggle') as Array<{ rowid: number }>
    expect(found.map(row => row.rowid)).toEqual(rows.map(row => row.id))
    db.close()

    // The planned stage's branch, with the agent's commit, is in the user's repository.
    const planned = children[2] as { id: number }
    const branch = `cascade/${planned.id}/planned`
    expect(gitIn(repo, ['branch', '--list', branch])).toContain(branch)
    expect(gitIn(repo, ['ls-tree', '--name-only', branch])).toContain(STAND_IN_FILE_NAME)
    expect(gitIn(repo, ['log', '-1', '--format=%an', branch])).toBe('emdx-node executor')
    expect(gitIn(repo, ['rev-parse', '--abbrev-ref', 'HEAD'])).toBe('main')

    // Webhooks arrived in order and signed with the requester's secret.
    const secret = (await readFile(path.join(network.requester.dataDir, 'webhook-secret'), 'utf8')).trim()
    const hooks = receiver.requests.map(request => JSON.parse(request.body) as { type: string, sequence: number })
    expect(hooks.map(hook => hook.type)).toEqual(['stage_completed', 'stage_completed', 'stage_completed', 'stage_completed', 'cascade_completed'])
    expect(hooks.map(hook => hook.sequence)).toEqual([1, 2, 3, 4, 5])
    for (const request of receiver.requests) {
      expect(verifyWebhook({ secret, body: request.body, timestampHeader: String(request.headers['x-emdx-timestamp']), signatureHeader: String(request.headers['x-emdx-signature']) })).toBe(true)
    }
    const first = receiver.requests[0]
    expect(verifyWebhook({ secret, body: `${first?.body ?? ''} `, timestampHeader: String(first?.headers['x-emdx-timestamp']), signatureHeader: String(first?.headers['x-emdx-signature']) })).toBe(false)

    // Canaries ran in the providers' sandboxes and passed, so no provider is distrusted.
    const reputation = await (await fetch(`${network.requester.apiUrl}/api/v1/reputation`)).json() as { peers: Array<{ peer: string, distrusted: boolean, localScore: number }> }
    expect(reputation.peers.filter(peer => peer.distrusted)).toEqual([])
    expect(reputation.peers.some(peer => peer.localScore > 0)).toBe(true)

    // Every node's chain replays and verifies from the CLI, and the balances add up to the grants.
    let balances = 0
    for (const node of [...network.providers, network.requester]) {
      const verify = await runCli(['receipts', '--verify', '--api-url', node.apiUrl])
      const credits = await runCli(['credits', '--json', '--api-url', node.apiUrl])
      expect(verify.code).toBe(0)
      expect(verify.stdout).toContain('ledger verified')
      balances += (JSON.parse(credits.stdout) as CreditsSummary).balance
    }
    expect(balances).toBe((network.providers.length + 1) * STARTING_GRANT)
  }, 300_000)

  it('moves a stage off a killed provider', async () => {
    const network = await startCascadeNetwork({ providers: 3, replyDelayMs: 2500 })
    const submitted = await submitCascade(network.requester, { content: TITLE, auto: true, stop: 'analyzed', remote: 'p2p' })
    let killed: string | undefined

    const events = await followCascade(network.requester, submitted.id, (event: CascadeEvent) => {
      if (killed === undefined && event.type === 'stage_running' && event.from === 'prompt') {
        killed = event.provider
        const victim = network.providers.find(provider => provider.status.peerId === killed)
        victim?.child.kill('SIGKILL')
      }
    })
    const record = await getCascade(network.requester, submitted.id)
    const receipts = await receiptsOf(network.requester)

    expect(killed).toBeDefined()
    expect(record.status).toBe('completed')
    expect(events.some(event => event.type === 'stage_retrying' && event.provider === killed)).toBe(true)
    const analyzed = record.transforms[1]
    // The stage moved on from the killed provider. Another provider may have
    // turned an offer away (say, while full) before or after the killed one.
    const attempts = analyzed?.attempts ?? []
    const killedAt = attempts.findIndex(attempt => attempt.provider === killed)
    expect(killedAt).toBeGreaterThanOrEqual(0)
    expect(attempts.length).toBeGreaterThan(killedAt + 1)
    expect(attempts.slice(killedAt + 1).every(attempt => attempt.provider !== killed)).toBe(true)
    expect(analyzed?.provider).not.toBe(killed)
    // Charged once: one receipt per stage, none from the killed provider for
    // the stage it died in. Canaries that checked the providers are command
    // stages of their own, and the killed provider may have run the first stage.
    expect(receipts.filter(receipt => receipt.role === 'requester' && receipt.stage !== CANARY_STAGE)).toHaveLength(2)
    expect(receipts.some(receipt => receipt.counterparty === killed && receipt.stage === 'prompt-analyzed')).toBe(false)
  }, 300_000)

  it('resumes after the requester is killed', async () => {
    const network = await startCascadeNetwork({ providers: 2, replyDelayMs: 2500 })
    const submitted = await submitCascade(network.requester, { content: TITLE, auto: true, stop: 'planned', remote: 'p2p' })
    let killedDuring: string | undefined

    await followCascade(network.requester, submitted.id, (event: CascadeEvent) => {
      if (event.type === 'stage_running' && event.from === 'prompt' && killedDuring === undefined) {
        killedDuring = `${event.from}-${event.to}`
        network.requester.child.kill('SIGKILL')
      }
    })
    await stopProcess(network.requester, 'SIGKILL')
    const restarted = await network.restartRequester()
    const record = await waitForCascadeEnd(restarted, submitted.id)
    const receipts = await receiptsOf(restarted)

    expect(killedDuring).toBe('prompt-analyzed')
    expect(record.status).toBe('completed')
    // The stage completed before the crash was not sent again.
    expect(record.transforms[0]?.attempts).toHaveLength(1)
    // Each stage was paid for once.
    const paid = receipts.filter(receipt => receipt.role === 'requester' && receipt.stage !== CANARY_STAGE).map(receipt => receipt.stage).sort()
    expect(paid).toEqual(['analyzed-planned', 'idea-prompt', 'prompt-analyzed'])
    const documents = await (await fetch(`${restarted.apiUrl}/api/v1/documents/${record.rootDocumentId ?? 0}/children`)).json() as { documents: unknown[] }
    expect(documents.documents).toHaveLength(1)
  }, 300_000)
})

if (missing !== undefined) {
  describe('cascades over the network', () => {
    reportMissing('docker', missing)
  })
}
