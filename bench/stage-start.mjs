// Start-to-exit time of a stage running `true`: the raw floors (`docker run
// --rm --network none`, `bwrap`) and the executor's backends, side by side in
// one run. Needs `npm run build`, the test image (scripts/build-test-image.sh)
// and a Docker daemon at DOCKER_HOST.
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
const runs = Number(args[args.indexOf('--runs') + 1] ?? 30) || 30
const jsonFile = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined
const warmupRuns = 3

function spawnAndWait (command, commandArgs) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, commandArgs, { stdio: 'ignore' })
    child.once('error', reject)
    child.once('exit', (code) => { code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}`)) })
  })
}

// `once` returns the time of the run and, optionally, work to finish before
// the next run starts (the executor's cleanup), which is not timed.
async function measure (name, once, between) {
  const times = []
  for (let index = 0; index < warmupRuns + runs; index++) {
    await between?.()
    const started = performance.now()
    const after = await once(index)
    const elapsed = performance.now() - started
    await after?.()
    if (index >= warmupRuns) times.push(elapsed)
  }
  times.sort((a, b) => a - b)
  const quantile = (q) => times[Math.min(times.length - 1, Math.ceil(q * times.length) - 1)]
  const result = { name, runs: times.length, medianMs: quantile(0.5), p95Ms: quantile(0.95), minMs: times[0], maxMs: times[times.length - 1] }
  process.stderr.write(`${name}: median ${result.medianMs.toFixed(1)} ms, p95 ${result.p95Ms.toFixed(1)} ms\n`)
  return result
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

async function benchExecutor (name, runtime, warmPoolSize) {
  const { executor, stateDir } = await executorFor(runtime, warmPoolSize)
  try {
    return await measure(name, async (index) => {
      const run = await executor.start({ jobId: `bench-${index}`, command: ['true'] })
      const result = await run.result
      if (result.outcome !== 'succeeded') throw new Error(`${name}: run ${index} ${result.outcome}: ${result.message}`)
      return async () => { await run.cleanedUp }
    }, async () => { await executor.warmUp() })
  } finally {
    await executor.close()
    await rm(stateDir, { recursive: true, force: true })
  }
}

const results = []
results.push(await measure('raw docker run --rm --network none', async () => {
  await spawnAndWait('docker', ['run', '--rm', '--network', 'none', image, 'true'])
}))
results.push(await measure('raw bwrap', async () => {
  await spawnAndWait('bwrap', ['--unshare-all', '--die-with-parent', '--new-session', '--ro-bind', rootfs, '/', '--proc', '/proc', '--dev', '/dev', '/bin/true'])
}))
results.push(await benchExecutor('docker backend, cold', 'runc', 0))
results.push(await benchExecutor('docker backend, warm pool', 'runc', 2))
results.push(await benchExecutor('bwrap backend, cold', 'bwrap', 0))
results.push(await benchExecutor('bwrap backend, warm pool', 'bwrap', 2))

const report = {
  command: `node bench/stage-start.mjs --runs ${runs}`,
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 1024 ** 3), kernel: os.release(), node: process.version },
  results
}
console.log(JSON.stringify(report, null, 2))
if (jsonFile !== undefined) await writeFile(jsonFile, `${JSON.stringify(report, null, 2)}\n`)
