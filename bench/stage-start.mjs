// Start-to-exit time of a stage running `true`: the raw floors (`docker run
// --rm --network none`, `bwrap`) and the executor's backends, side by side in
// one run. The variants take turns within each round, so that load from other
// processes on the machine falls on all of them alike.
//
// "Start-to-exit" is from the call until the exit code is known: for the
// executor, from `start()` until `result` resolves (the stage's processes
// are dead and its metrics read). Removing the container or workspace runs
// after that and is awaited, untimed, before the next round.
//
// Needs `npm run build`, the test image (scripts/build-test-image.sh) and a
// Docker daemon at DOCKER_HOST.
//
// Usage: node bench/stage-start.mjs [--runs N] [--json FILE]
import { spawn } from 'node:child_process'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { createExecutor } from '../dist/exec/create.js'

const repoRoot = fileURLToPath(new URL('..', import.meta.url))
const image = process.env.EMDX_TEST_IMAGE ?? 'emdx-sandbox-test:latest'
const rootfs = process.env.EMDX_TEST_ROOTFS ?? path.join(repoRoot, 'build/test-image/rootfs')
const args = process.argv.slice(2)
const runs = args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : 30
const jsonFile = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined
const warmupRounds = 3

async function spawnAndWait (command, commandArgs) {
  await new Promise((resolve, reject) => {
    const child = spawn(command, commandArgs, { stdio: 'ignore' })
    child.once('error', reject)
    child.once('exit', (code) => { code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}`)) })
  })
}

async function executorFor (runtime, warmPoolSize) {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'emdx-bench-'))
  await chmod(stateDir, 0o711)
  const created = await createExecutor({
    nodeId: `bench-${path.basename(stateDir).slice(-6)}`,
    stateDir,
    runtime,
    images: [{ name: image, rootfs }],
    agentEgress: [],
    warmPoolSize,
    limits: { memoryBytes: 256 * 1024 ** 2, workspaceBytes: 16 * 1024 ** 2 },
    logger: pino({ level: 'silent' })
  })
  if (created.executor === undefined) throw new Error(`no ${runtime} executor: ${created.info.reason}`)
  return { executor: created.executor, stateDir }
}

/** A variant runs once and returns untimed work to finish before the next run. */
function executorVariant (name, executor) {
  let count = 0
  return {
    name,
    before: async () => { await executor.warmUp() },
    once: async () => {
      const run = await executor.start({ jobId: `bench-${count++}`, command: ['true'] })
      const result = await run.result
      if (result.outcome !== 'succeeded') throw new Error(`${name}: ${result.outcome}: ${result.message}`)
      return async () => { await run.cleanedUp }
    }
  }
}

const cold = await executorFor('runc', 0)
const warm = await executorFor('runc', 2)
const bwrapCold = await executorFor('bwrap', 0)
const bwrapWarm = await executorFor('bwrap', 2)
const variants = [
  { name: 'raw docker run --rm --network none', once: async () => { await spawnAndWait('docker', ['run', '--rm', '--network', 'none', image, 'true']) } },
  { name: 'raw bwrap', once: async () => { await spawnAndWait('bwrap', ['--unshare-all', '--die-with-parent', '--new-session', '--ro-bind', rootfs, '/', '--proc', '/proc', '--dev', '/dev', '/bin/true']) } },
  executorVariant('docker backend, cold', cold.executor),
  executorVariant('docker backend, warm pool', warm.executor),
  executorVariant('bwrap backend, cold', bwrapCold.executor),
  executorVariant('bwrap backend, warm pool', bwrapWarm.executor)
]

const times = new Map(variants.map(variant => [variant.name, []]))
for (let round = 0; round < warmupRounds + runs; round++) {
  // Rotate the order each round, so no variant always follows the same one.
  for (let index = 0; index < variants.length; index++) {
    const variant = variants[(index + round) % variants.length]
    await variant.before?.()
    const started = performance.now()
    const after = await variant.once()
    const elapsed = performance.now() - started
    await after?.()
    if (round >= warmupRounds) times.get(variant.name).push(elapsed)
  }
}

for (const entry of [cold, warm, bwrapCold, bwrapWarm]) {
  await entry.executor.close()
  await rm(entry.stateDir, { recursive: true, force: true })
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]
const results = variants.map(({ name }) => {
  const sorted = [...times.get(name)].sort((a, b) => a - b)
  return { name, runs: sorted.length, medianMs: quantile(sorted, 0.5), p95Ms: quantile(sorted, 0.95), minMs: sorted[0], maxMs: sorted.at(-1) }
})
for (const result of results) {
  process.stderr.write(`${result.name.padEnd(36)} median ${result.medianMs.toFixed(1).padStart(6)} ms   p95 ${result.p95Ms.toFixed(1).padStart(6)} ms\n`)
}

const report = {
  command: `node bench/stage-start.mjs --runs ${runs}`,
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 1024 ** 3), kernel: os.release(), node: process.version, loadAverage: os.loadavg() },
  results
}
console.log(JSON.stringify(report, null, 2))
if (jsonFile !== undefined) await writeFile(jsonFile, `${JSON.stringify(report, null, 2)}\n`)
