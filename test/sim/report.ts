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
    `receipts: ${result.receipts}; sum of balances ${credits(result.balanceSum)}, sum of grants ${credits(result.grantSum)}`
  ]
  return lines.join('\n')
}
