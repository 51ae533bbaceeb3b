import { drawBalanceChart } from './chart.js'
import { element, fillTable, peerLabel, replaceWhenChanged, required, setText } from './dom.js'
import { formatBytes, formatCredits, formatDelta, formatDuration, formatNumber, formatTime, shortJobId, shortPeerId } from './format.js'
import type { CascadeView, CreditsView, DashboardSnapshot, JobView, NetworkView, NodeView, ReputationView } from '../snapshot-types.js'

/** Shows a snapshot of the node on the page. */
export function renderSnapshot (snapshot: DashboardSnapshot): void {
  renderNode(snapshot.node)
  renderNetwork(snapshot.network)
  renderWork(snapshot.work.executing, required<HTMLTableElement>('#executing'), 'No stages run for others yet.')
  renderWork(snapshot.work.requested, required<HTMLTableElement>('#requested'), 'No stages sent out yet.')
  renderCascades(snapshot.cascades)
  renderCredits(snapshot.credits, snapshot.generatedAt)
  renderReputation(snapshot.reputation)
}

function renderNode (node: NodeView): void {
  setText(required('#peer-id'), node.peerId)
  replaceWhenChanged(required('#addresses'), node.addresses, () => node.addresses.map(address => element('li', {}, address)))
  setText(required('#uptime'), formatDuration(node.uptimeSeconds * 1000))
  setText(required('#version'), node.version)

  const { sandbox, share } = node
  setText(required('#sandbox'), sandbox.backend === 'none'
    ? 'none'
    : `${sandbox.backend}, runtime ${sandbox.runtime}, isolation ${sandbox.isolation}`)
  setText(required('#shared'), share.enabled
    ? `${formatNumber(share.cpus)} CPUs, ${formatBytes(share.memoryBytes)}`
    : 'nothing: this node runs no stages for others')
  setText(required('#free-capacity'), share.enabled
    ? `${formatNumber(share.freeCpus)} CPUs, ${formatBytes(share.freeMemoryBytes)}`
    : '–')
  setText(required('#running-stages'), String(share.runningStages))
  renderSandboxWarning(node)
}

/**
 * Shows a warning whenever stages run here without gVisor, or cannot run for lack
 * of a sandbox, with the reason the node gives and its fix.
 */
function renderSandboxWarning (node: NodeView): void {
  const warning = required('#sandbox-warning')
  const { sandbox, share } = node
  const reason = sandbox.reason === undefined ? '' : ` Reason: ${sandbox.reason.replace(/\.$/, '')}.`
  let text = ''
  if (!share.enabled && sandbox.backend === 'none') {
    text = `No sandbox: this node runs no stages for others.${reason}`
  } else if (share.enabled && sandbox.backend === 'none') {
    text = `Stages run without a sandbox.${reason}`
  } else if (share.enabled && !sandbox.gvisor) {
    text = `Stages run without gVisor: the ${sandbox.runtime} runtime gives ${sandbox.isolation} isolation, and stages share the host kernel.${reason}`
  }
  setText(warning, text)
  if (warning.hidden !== (text === '')) {
    warning.hidden = text === ''
  }
}

function renderNetwork (network: NetworkView): void {
  const { totals } = network
  setText(required('#connected-peers'), String(network.connectedPeers))
  setText(required('#routing-table'), `${network.routingTableSize} peers`)
  setText(required('#provider-count'), String(totals.providers))
  setText(required('#network-cpus'), `${formatNumber(totals.freeCpus)} of ${formatNumber(totals.totalCpus)}`)
  setText(required('#network-memory'), `${formatBytes(totals.freeMemoryBytes)} of ${formatBytes(totals.totalMemoryBytes)}`)

  // Round trips change with every fetch; leaving them out of the key keeps the table still.
  const key = network.providers.map(provider => ({ ...provider, rttMs: undefined, fetchedAt: undefined }))
  fillTable(required<HTMLTableElement>('#providers'), key, () => network.providers.map(provider => [
    peerLabel(provider.peerId, shortPeerId(provider.peerId)),
    `${formatNumber(provider.freeCpus)} of ${formatNumber(provider.totalCpus)}`,
    formatBytes(provider.freeMemoryBytes),
    provider.distrusted ? `${formatNumber(provider.trust)} (distrusted)` : formatNumber(provider.trust),
    `${provider.price.perCpuSecond} / ${provider.price.perGibSecond} / ${provider.price.perThousandTokens}`,
    `${provider.runtime} (${provider.isolation})`,
    `${provider.rttMs} ms`
  ]), 'No providers seen yet.')
}

function renderWork (jobs: JobView[], table: HTMLTableElement, emptyText: string): void {
  fillTable(table, jobs, () => jobs.map(job => [
    element('span', { class: 'mono', title: job.jobId }, shortJobId(job.jobId)),
    peerLabel(job.peer, shortPeerId(job.peer)),
    job.stage,
    jobState(job),
    formatDuration(job.elapsedMs)
  ]), emptyText)
}

function jobState (job: JobView): HTMLElement {
  const outcome = job.outcome === undefined ? '' : ` (${job.outcome.replace(/_/g, ' ')})`
  const attributes: Record<string, string> = { class: 'state', 'data-state': job.state }
  if (job.error !== undefined) {
    attributes.title = job.error
  }
  return element('span', attributes, `${job.state}${outcome}`)
}

function renderCascades (cascades: CascadeView[]): void {
  required('#no-cascades').hidden = cascades.length > 0
  replaceWhenChanged(required('#cascades'), cascades, () => cascades.map(cascadeItem))
}

function cascadeItem (cascade: CascadeView): HTMLElement {
  const headingId = `cascade-${cascade.id}`
  const { done, total } = cascade.progress
  const bar = element('div', {
    class: 'stage-bar',
    role: 'progressbar',
    'aria-label': `Progress of cascade ${cascade.title}`,
    'aria-valuemin': '0',
    'aria-valuemax': String(total),
    'aria-valuenow': String(done),
    'aria-valuetext': `${done} of ${total} stages done`
  }, ...cascade.stages.map(stage => element('span', { class: 'segment', 'data-state': stage.state })))

  const stages = element('ol', { class: 'stages plain' }, ...cascade.stages.map(stage => element('li', { 'data-stage': stage.stage, 'data-state': stage.state },
    element('span', { class: 'stage-name' }, stage.stage),
    element('span', { class: 'stage-state' }, stage.state),
    stage.provider === undefined ? undefined : element('span', { class: 'stage-provider' }, 'on ', peerLabel(stage.provider, shortPeerId(stage.provider)))
  )))

  return element('li', { class: 'cascade', 'data-cascade-id': cascade.id, 'data-status': cascade.status, 'aria-labelledby': headingId },
    element('h3', { id: headingId }, cascade.title),
    element('p', { class: 'cascade-meta' },
      element('span', { class: 'state', 'data-state': cascade.status }, cascade.status),
      ` · ${cascade.remote ? 'on the network' : 'in this node\'s sandbox'} · started ${formatTime(cascade.createdAt)} · `,
      element('span', { class: 'mono' }, cascade.id)),
    bar,
    stages,
    cascade.activity === undefined ? undefined : element('p', { class: 'cascade-activity' }, cascade.activity),
    cascade.error === undefined ? undefined : element('p', { class: 'cascade-error' }, cascade.error)
  )
}

function renderCredits (credits: CreditsView, now: string): void {
  const balance = required('#balance')
  setText(balance, formatCredits(credits.balance))
  balance.setAttribute('data-millicredits', String(credits.balance))
  setText(required('#earned'), formatCredits(credits.earned))
  setText(required('#spent'), formatCredits(credits.spent))
  setText(required('#grant'), formatCredits(credits.grant))

  const chart = required<SVGSVGElement>('#balance-chart')
  const chartKey = JSON.stringify([credits.history, credits.balance, Math.floor(Date.parse(now) / 60_000)])
  if (chart.getAttribute('data-key') !== chartKey) {
    chart.setAttribute('data-key', chartKey)
    setText(required('#balance-chart-caption'), drawBalanceChart(chart, credits.history, now, credits.balance))
  }

  fillTable(required<HTMLTableElement>('#receipts'), credits.receipts, () => credits.receipts.map(receipt => [
    formatTime(receipt.appendedAt),
    receipt.stage,
    formatDelta(receipt.delta),
    signatureText(receipt.signatures),
    peerLabel(receipt.counterparty, shortPeerId(receipt.counterparty)),
    receipt.outcome.replace(/_/g, ' '),
    receipt.role === 'executor' ? 'ran it' : 'sent it',
    String(receipt.seq)
  ]), 'No receipts yet.')
}

function signatureText (signatures: { executor: boolean, requester: boolean }): HTMLElement {
  if (signatures.executor && signatures.requester) {
    return element('span', { class: 'verified' }, 'both verified')
  }
  const problems = [
    signatures.executor ? undefined : 'executor signature invalid',
    signatures.requester ? undefined : 'requester countersignature invalid or missing'
  ].filter(problem => problem !== undefined)
  return element('span', { class: 'unverified' }, problems.join(', '))
}

function renderReputation (reputation: ReputationView): void {
  fillTable(required<HTMLTableElement>('#reputation'), reputation.peers, () => reputation.peers.map(peer => [
    peerLabel(peer.peer, shortPeerId(peer.peer)),
    formatNumber(peer.score),
    formatNumber(peer.localScore),
    peerStatus(peer)
  ]), 'No reputation data yet.')
}

function peerStatus (peer: ReputationView['peers'][number]): string {
  if (peer.forker) {
    return 'forked its ledger'
  }
  if (peer.backedOffUntil !== undefined) {
    return `backed off until ${formatTime(peer.backedOffUntil)}`
  }
  return peer.distrusted ? 'distrusted' : 'trusted'
}
