import { describe, expect, it } from 'vitest'
import { STARTING_CREDIT_LINE, STARTING_GRANT } from '../../src/credits/admission.js'
import { DEFAULT_OPTIONS, Simulation } from './model.js'
import { formatFigures } from './report.js'
import type { SimulationResult } from './model.js'

// 10,000 nodes, 20% adversaries (free-riders, cheaters returning garbage,
// Sybil rings, chain forkers), driving the real ledger, admission,
// EigenTrust, backoff and spot check code. The targets are correctness
// properties of the model, so they are asserted; the run time is not.

// EMDX_SIM_NODES and EMDX_SIM_SEED change the run, to try other sizes and seeds by hand.
const nodes = Number(process.env.EMDX_SIM_NODES ?? DEFAULT_OPTIONS.nodes)
const seed = Number(process.env.EMDX_SIM_SEED ?? DEFAULT_OPTIONS.seed)

describe('simulated network', () => {
  let result: SimulationResult

  it('runs all rounds', async () => {
    result = await new Simulation({ nodes, seed }).run()
    process.stdout.write(`${formatFigures(result)}\n`)

    expect(result.rounds).toHaveLength(DEFAULT_OPTIONS.rounds)
  }, 300_000)

  it('sends adversaries little work', () => {
    expect(result.adversaryWorkShareAfterWarmup).toBeLessThan(0.05)
  })

  it('gives adversaries no free work', () => {
    // A new identity may use its grant and its starting credit line.
    expect(result.adversaryUnpaidWork).toBeLessThanOrEqual(result.adversaryRequesters * (STARTING_GRANT + STARTING_CREDIT_LINE))
  })

  it('distrusts forkers that forked', () => {
    expect(result.forkersThatForked).toBeGreaterThan(0)
    expect(result.forkersDistrusted / result.forkersThatForked).toBeGreaterThan(0.9)
  })

  it('conserves the sum of balances', () => {
    expect(result.balanceSum).toBe(result.grantSum)
  })
})
