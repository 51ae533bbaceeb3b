import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensurePageBuilt, launchChromium, missingChromium, reportMissingChromium, testOutputDir } from '../support/browser.js'
import { waitFor } from '../support/nodes.js'
import { startStageNetwork } from '../support/stage-network.js'
import type { CapacityResponse } from '../../src/api/capacity-routes.js'
import type { CreditsSummary } from '../../src/api/credits-routes.js'
import type { EmdxNode, NodeStatus, PeerSummary } from '../../src/node/node.js'
import type { Chromium } from '../support/browser.js'
import type { StageNetwork } from '../support/stage-network.js'
import type { Page } from 'playwright-core'

// The dashboard page in headless Chromium, against three real nodes on
// loopback. A scripted runner returns each stage's result once a gate
// lets it through, so the test can watch a cascade stop at each stage.

const missing = await missingChromium()

/** Time allowed for the page to show a change the node already made. */
const PAGE_TIMEOUT_MS = 30_000
const LAPTOP = { width: 1366, height: 900 }
const NARROW = { width: 360, height: 800 }

interface OpenPage {
  page: Page
  /** Console errors and uncaught exceptions of the page. */
  errors: string[]
}

async function getJson<T> (node: EmdxNode, route: string): Promise<T> {
  const response = await fetch(`${node.api.url}${route}`)
  if (!response.ok) {
    throw new Error(`GET ${route} returned ${response.status}: ${await response.text()}`)
  }
  return await response.json() as T
}

/** Formats millicredits as the page should show them. */
function expectedCredits (millicredits: number): string {
  return `${(millicredits / 1000).toLocaleString('en-US', { minimumFractionDigits: 3, maximumFractionDigits: 3 })} credits`
}

describe('dashboard page', () => {
  if (missing !== undefined) {
    reportMissingChromium(missing)
    return
  }

  let network: StageNetwork
  let chromium: Chromium
  let node: EmdxNode

  beforeAll(async () => {
    await ensurePageBuilt()
    network = await startStageNetwork(3)
    node = network.nodes[0] as EmdxNode
    chromium = await launchChromium()
  }, 120_000)

  afterAll(async () => {
    await chromium?.close()
    await network?.stop()
  })

  /** Opens the dashboard of `node` and waits for its first snapshot. */
  async function openDashboard (viewport = LAPTOP): Promise<OpenPage> {
    const page = await chromium.context.newPage()
    await page.setViewportSize(viewport)
    const errors: string[] = []
    page.on('console', (message) => {
      if (message.type() === 'error') {
        errors.push(message.text())
      }
    })
    page.on('pageerror', (error) => { errors.push(error.message) })
    await page.goto(`${node.api.url}/`)
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: PAGE_TIMEOUT_MS })
    return { page, errors }
  }

  it('loads without console errors', async () => {
    const status = await getJson<NodeStatus>(node, '/api/v1/status')
    const { page, errors } = await openDashboard()

    const tables = await page.locator('table').count()
    const captions = (await page.locator('table > caption').allTextContents()).map(caption => caption.trim())
    const progressLabels = await page.locator('[role="progressbar"]:not([aria-label])').count()
    const warning = await page.locator('#sandbox-warning').textContent()
    await page.setViewportSize(NARROW)
    // Scripts run in the page, so they are strings: the tests compile without the DOM's types.
    const overflow = await page.evaluate('document.documentElement.scrollWidth - window.innerWidth') as number
    await page.screenshot({ path: path.join(await testOutputDir(), 'dashboard-narrow.png'), fullPage: true })
    await page.close()

    expect(errors).toEqual([])
    expect(tables).toBe(5)
    expect(captions.length).toBe(tables)
    expect(captions.every(caption => caption !== '')).toBe(true)
    expect(progressLabels).toBe(0)
    expect(warning).toContain(status.sandbox.reason)
    expect(overflow).toBeLessThanOrEqual(0)
  })

  it('shows the API peer count', async () => {
    const { page, errors } = await openDashboard()
    let apiCount = -1
    let shown: string | null = null

    // Peers may connect or leave between two reads, so both are read again until they agree.
    await waitFor(async () => {
      apiCount = (await getJson<{ peers: PeerSummary[] }>(node, '/api/v1/peers')).peers.length
      shown = await page.locator('#connected-peers').textContent()
      return shown === String(apiCount)
    }, PAGE_TIMEOUT_MS, 'the page to show the peer count of the API').catch(() => {})
    await page.close()

    expect(shown).toBe(String(apiCount))
    expect(apiCount).toBe(2)
    expect(errors).toEqual([])
  })

  it('lists the known providers', async () => {
    const { page, errors } = await openDashboard()
    const capacity = await getJson<CapacityResponse>(node, '/api/v1/capacity')
    const rows = page.locator('#providers tbody tr')

    await expect.poll(async () => await rows.count(), { timeout: PAGE_TIMEOUT_MS }).toBe(capacity.network.providers.length)
    const shown = await rows.locator('[title]').evaluateAll(cells => cells.map(cell => cell.getAttribute('title')))
    await page.close()

    expect(capacity.network.providers.length).toBe(2)
    expect(shown.sort()).toEqual(network.nodes.slice(1).map(provider => provider.peerId.toString()).sort())
    expect(errors).toEqual([])
  })

  it('follows a cascade without reloading', async () => {
    const { page, errors } = await openDashboard()
    let navigations = 0
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) {
        navigations++
      }
    })
    await page.evaluate('document.body.dataset.testMarker = "loaded once"')
    const providers = network.nodes.slice(1).map(provider => provider.peerId.toString())

    const submitted = await fetch(`${node.api.url}/api/v1/cascade`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ content: 'Add a dark mode to the settings page', title: 'Dark mode', remote: true, auto: true })
    })
    expect(submitted.status).toBe(201)
    const { id } = await submitted.json() as { id: string }

    const cascade = page.locator(`li.cascade[data-cascade-id="${id}"]`)
    const bar = cascade.getByRole('progressbar')
    await cascade.waitFor({ timeout: PAGE_TIMEOUT_MS })
    for (const [index, stage] of ['prompt', 'analyzed', 'planned', 'done'].entries()) {
      const item = cascade.locator(`li[data-stage="${stage}"]`)
      await expect.poll(async () => await item.getAttribute('data-state'), { timeout: PAGE_TIMEOUT_MS }).toBe('running')
      expect(await bar.getAttribute('aria-valuenow')).toBe(String(index + 1))

      network.gate.release()
      await expect.poll(async () => await item.getAttribute('data-state'), { timeout: PAGE_TIMEOUT_MS }).toBe('done')
      expect(await bar.getAttribute('aria-valuenow')).toBe(String(index + 2))
      expect(providers).toContain(await item.locator('.stage-provider [title]').getAttribute('title'))
    }
    await expect.poll(async () => await cascade.getAttribute('data-status'), { timeout: PAGE_TIMEOUT_MS }).toBe('completed')

    const credits = await getJson<CreditsSummary>(node, '/api/v1/credits')
    const balance = page.locator('#balance')
    await expect.poll(async () => await balance.getAttribute('data-millicredits'), { timeout: PAGE_TIMEOUT_MS }).toBe(String(credits.balance))
    const receiptRows = page.locator('#receipts tbody tr')
    await expect.poll(async () => await receiptRows.count(), { timeout: PAGE_TIMEOUT_MS }).toBe(4)
    await page.screenshot({ path: path.join(await testOutputDir(), 'dashboard.png'), fullPage: true })

    expect(await balance.textContent()).toBe(expectedCredits(credits.balance))
    expect(credits.spent).toBeGreaterThan(0)
    expect(await bar.getAttribute('aria-valuetext')).toBe('5 of 5 stages done')
    expect(await receiptRows.filter({ hasText: 'both verified' }).count()).toBe(4)
    expect(await page.locator('#requested tbody tr', { hasText: 'completed (succeeded)' }).count()).toBe(4)
    expect(await page.evaluate('document.body.dataset.testMarker')).toBe('loaded once')
    expect(navigations).toBe(0)
    await page.close()
    expect(errors).toEqual([])
  })
})
