import type { SimulationResult } from './model.js'

const percent = (value: number): string => `${(value * 100).toFixed(2)}%`
const credits = (millicredits: number): string => `${(millicredits / 1000).toFixed(0)} credits`

/** Formats the figures of a simulation run as the table recorded in docs/benchmarks.md. */
export function formatFigures (result: SimulationResult): string {
  const lines = [
    `simulation: ${result.options.nodes} nodes, ${percent(result.options.adversaryShare)} adversaries, ${result.options.rounds} rounds, warm-up ${result.options.warmupRounds} rounds, seed ${result.options.seed}`,
    '',
    '| round | real stages | to adversaries | share | admission rejections | fork proofs | adversary stages by kind |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...result.rounds.map(round => `| ${round.round} | ${round.realStages} | ${round.stagesToAdversaries} | ${percent(round.realStages === 0 ? 0 : round.stagesToAdversaries / round.realStages)} | ${round.admissionRejections} | ${round.forkProofs} | ${Object.entries(round.byKind).map(([kind, count]) => `${kind} ${count}`).join(', ')} |`),
    '',
    `share of real stages run by adversaries after warm-up: ${percent(result.adversaryWorkShareAfterWarmup)} (random choice would give ${percent(result.adversaryProviderShare)})`,
    `honest work adversaries obtained without paying: ${credits(result.adversaryUnpaidWork)}; their grants: ${credits(result.adversaryGrants)} (${percent(result.adversaryUnpaidWork / result.adversaryGrants)})`,
    `forkers distrusted by every vantage: ${result.forkersDistrusted} of the ${result.forkersThatForked} that forked (${result.forkers} forkers)`,
    `receipts: ${result.receipts}; sum of balances ${credits(result.balanceSum)}, sum of grants ${credits(result.grantSum)}`,
    `EigenTrust per vantage: median ${median(result.eigenTrustRuns.map(run => run.ms)).toFixed(1)} ms, median ${median(result.eigenTrustRuns.map(run => run.iterations))} iterations, up to ${Math.max(...result.eigenTrustRuns.map(run => run.peers))} peers with trust (${result.eigenTrustRuns.length} runs)`
  ]
  return lines.join('\n')
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) {
    return 0
  }
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
