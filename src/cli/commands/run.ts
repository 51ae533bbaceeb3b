import { Option } from 'commander'
import { ConfigError } from '../../node/errors.js'
import { apiBaseUrl, ApiRequestError } from '../api-client.js'
import { addApiOptions } from './status.js'
import type { RunLine } from '../../api/run-routes.js'
import type { ApiTarget } from '../api-client.js'
import type { Command } from 'commander'

interface RunOptions extends ApiTarget {
  remote?: string
  image?: string
  timeout?: string
  cpus?: string
  memory?: string
  maxCredits?: string
  json?: boolean
}

export function registerRunCommand (program: Command): void {
  addApiOptions(program.command('run'))
    .description('run one command stage, on another node with --remote p2p or in this node\'s sandbox; prints its output and exits with its exit code')
    .argument('<command...>', 'the command and its arguments; put -- before it, as in: emdx-node run --remote p2p -- sh -c "make test"')
    .addOption(new Option('--remote <network>', 'run the stage on another node of this network').choices(['p2p']))
    .option('--image <name>', 'image to run the command in; the executor\'s default when missing')
    .option('--timeout <seconds>', 'wall-clock limit of the stage, in seconds (default 300)')
    .option('--cpus <n>', 'CPUs the stage needs (default 1)')
    .option('--memory <size>', 'memory the stage needs, such as 512m (default 256m)')
    .option('--max-credits <millicredits>', 'the most this stage may cost, in millicredits (default 50000)')
    .action(async (command: string[], options: RunOptions) => {
      process.exitCode = await runCommand(command, options)
    })
}

function positiveNumber (value: string | undefined, flag: string, integer: boolean): number | undefined {
  if (value === undefined) {
    return undefined
  }
  const number = Number(value)
  if (!Number.isFinite(number) || number <= 0 || (integer && !Number.isInteger(number))) {
    throw new ConfigError(`invalid ${flag} "${value}": expected a positive ${integer ? 'whole ' : ''}number`)
  }
  return number
}

async function runCommand (command: string[], options: RunOptions): Promise<number> {
  const body = {
    command,
    remote: options.remote === 'p2p',
    image: options.image,
    timeoutSeconds: positiveNumber(options.timeout, '--timeout', true),
    cpus: positiveNumber(options.cpus, '--cpus', false),
    memory: options.memory,
    maxCredits: positiveNumber(options.maxCredits, '--max-credits', true)
  }

  const baseUrl = apiBaseUrl(options)
  let response: Response
  try {
    response = await fetch(`${baseUrl}/api/v1/run`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  } catch (err) {
    throw new ApiRequestError(`no emdx-node is running at ${baseUrl} (${(err as Error).message}); start one with "emdx-node start", or pass --api-port`, { cause: err })
  }
  if (!response.ok || response.body === null) {
    const error = await response.json().catch(() => ({})) as { message?: string }
    throw new ApiRequestError(`the node rejected the run (HTTP ${response.status}): ${error.message ?? response.statusText}`)
  }

  let exitCode = 1
  for await (const line of readLines(response.body)) {
    const event = JSON.parse(line) as RunLine
    if (options.json === true) {
      process.stdout.write(`${line}\n`)
    }
    exitCode = report(event, options.json === true) ?? exitCode
  }
  return exitCode
}

/** Prints one event for a person; returns the exit code once the result is in. */
function report (event: RunLine, quiet: boolean): number | undefined {
  const note = (text: string): void => { if (!quiet) process.stderr.write(`${text}\n`) }
  switch (event.type) {
    case 'searching':
      note(event.attempt === 1 ? 'looking for a provider...' : `looking for another provider (attempt ${event.attempt})...`)
      return undefined
    case 'dispatched':
      note(`sent to ${event.provider} (job ${event.jobId})`)
      return undefined
    case 'running':
      note(event.provider === 'local' ? 'running in this node\'s sandbox' : `running on ${event.provider}`)
      return undefined
    case 'output':
      return undefined
    case 'retrying':
      note(`${event.reason}; retrying in ${(event.delayMs / 1000).toFixed(1)} s`)
      return undefined
    case 'error':
      note(`emdx-node: ${event.message}`)
      return 1
    case 'result': {
      if (!quiet) {
        process.stdout.write(event.result.stdout)
        if (event.result.stdout !== '' && !event.result.stdout.endsWith('\n')) {
          process.stdout.write('\n')
        }
      }
      const cost = event.credits === undefined ? '' : `, ${(event.credits / 1000).toFixed(3)} credits`
      note(`${event.result.outcome} on ${event.provider}: exit code ${event.result.exitCode ?? 'none'}, ${(event.result.metrics.wallTimeMs / 1000).toFixed(1)} s${cost}`)
      if (event.result.outcome !== 'succeeded' && event.result.outcome !== 'failed') {
        note(event.result.message)
      }
      return event.result.exitCode ?? 1
    }
  }
}

async function * readLines (body: ReadableStream<Uint8Array>): AsyncIterable<string> {
  const decoder = new TextDecoder()
  let buffered = ''
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true })
    let newline = buffered.indexOf('\n')
    while (newline >= 0) {
      const line = buffered.slice(0, newline).trim()
      buffered = buffered.slice(newline + 1)
      if (line !== '') {
        yield line
      }
      newline = buffered.indexOf('\n')
    }
  }
  if (buffered.trim() !== '') {
    yield buffered.trim()
  }
}
