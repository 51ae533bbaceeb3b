import { Option } from 'commander'
import { STAGES } from '../../cascade/stages.js'
import { ConfigError } from '../../node/errors.js'
import { formatDuration } from '../../node/units.js'
import { STAND_IN_LABEL } from '../../standin/messages-api.js'
import { apiBaseUrl, ApiRequestError, requestJson } from '../api-client.js'
import { formatRows, formatTable, printJson } from '../output.js'
import { addApiOptions } from './status.js'
import type { CascadeEvent } from '../../cascade/events.js'
import type { CascadeRecord } from '../../cascade/store.js'
import type { KnowledgeDocument } from '../../knowledge/document-store.js'
import type { ApiTarget } from '../api-client.js'
import type { Command } from 'commander'

interface AddOptions extends ApiTarget {
  title?: string
  stage?: string
  auto?: boolean
  stop?: string
  analyze?: boolean
  plan?: boolean
  remote?: string
  repo?: string
  doc?: string
  model?: string
  timeout?: string
  maxCredits?: string
  callbackUrl?: string
  follow?: boolean
  json?: boolean
}

export function registerCascadeCommands (program: Command): void {
  const cascade = program.command('cascade').description('run ideas through the cascade: idea -> prompt -> analyzed -> planned -> done')

  addApiOptions(cascade.command('add'))
    .description('start a cascade from an idea (or a document) and print its id; --follow shows each stage live')
    .argument('[content]', 'the idea, or - to read it from standard input')
    .option('--title <title>', 'title of the cascade\'s documents (default: the first line of the idea)')
    .addOption(new Option('--stage <stage>', 'stage of the starting document (default idea)').choices([...STAGES]))
    .option('--auto', 'run every stage up to done, or up to --stop')
    .addOption(new Option('--stop <stage>', 'last stage to reach; implies --auto').choices([...STAGES]))
    .option('--analyze', 'run up to the analysis (--auto --stop analyzed)')
    .option('--plan', 'run up to the plan (--auto --stop planned)')
    .addOption(new Option('--remote <network>', 'run every stage on other nodes of this network').choices(['p2p']))
    .option('--repo <path>', 'git repository the stages work on; each stage\'s branch comes back as cascade/<doc id>/<stage>')
    .option('--doc <id>', 'start from this existing document instead of an idea')
    .option('--model <model>', 'model the agents use (the executor\'s default when missing)')
    .option('--timeout <seconds>', 'wall-clock limit of each stage, in seconds (default 900)')
    .option('--max-credits <millicredits>', 'the most one stage may cost, in millicredits (default 50000)')
    .option('--callback-url <url>', 'URL that receives signed stage_completed, cascade_completed and cascade_failed webhooks')
    .option('--follow', 'show each stage\'s progress until the cascade ends; the exit code says how it ended')
    .action(async (content: string | undefined, options: AddOptions) => {
      process.exitCode = await addCascade(content, options)
    })

  addApiOptions(cascade.command('status'))
    .description('show running and recent cascades, or one cascade in detail')
    .argument('[id]', 'a cascade id')
    .action(async (id: string | undefined, options: ApiTarget & { json?: boolean }) => {
      await showStatus(id, options)
    })

  addApiOptions(cascade.command('show'))
    .description('show the documents cascades produced at a stage, or one document by id')
    .argument('<stage-or-id>', `a stage (${STAGES.join(', ')}) or a document id`)
    .option('--full', 'print each document\'s whole content')
    .action(async (target: string, options: ApiTarget & { json?: boolean, full?: boolean }) => {
      await showDocuments(target, options)
    })

  addApiOptions(cascade.command('runs'))
    .description('list cascade runs with their state and stages')
    .option('--limit <n>', 'how many runs to list, newest first (default 20)')
    .action(async (options: ApiTarget & { json?: boolean, limit?: string }) => {
      await listRuns(options)
    })

  addApiOptions(cascade.command('sync'))
    .description('make the node resume every unfinished cascade, as after a restart, and list them')
    .action(async (options: ApiTarget & { json?: boolean }) => {
      const result = await requestJson<{ resumed: number, cascades: CascadeRecord[] }>(apiBaseUrl(options), '/api/v1/cascades/sync', { method: 'POST', body: {} })
      if (options.json === true) {
        printJson(result)
        return
      }
      process.stdout.write(`${result.resumed} unfinished cascade${result.resumed === 1 ? '' : 's'} resumed\n`)
      if (result.cascades.length > 0) {
        process.stdout.write(`${formatRunTable(result.cascades)}\n`)
      }
    })
}

async function addCascade (content: string | undefined, options: AddOptions): Promise<number> {
  const text = content === '-' ? await readStdin() : content
  if ((text === undefined || text.trim() === '') && options.doc === undefined) {
    throw new ConfigError('emdx cascade add needs the idea as an argument (or - to read it from standard input), or --doc ID')
  }
  const documentId = options.doc === undefined ? undefined : Number(options.doc)
  if (documentId !== undefined && (!Number.isInteger(documentId) || documentId <= 0)) {
    throw new ConfigError(`invalid --doc "${options.doc}": expected a document id such as 42`)
  }

  const body = {
    content: text,
    documentId,
    title: options.title,
    stage: options.stage,
    auto: options.auto,
    stop: options.stop,
    analyze: options.analyze,
    plan: options.plan,
    remote: options.remote === 'p2p',
    repo: options.repo,
    model: options.model,
    timeoutSeconds: wholeNumber(options.timeout, '--timeout'),
    maxCredits: wholeNumber(options.maxCredits, '--max-credits'),
    callbackUrl: options.callbackUrl
  }
  const baseUrl = apiBaseUrl(options)
  const record = await requestJson<CascadeRecord>(baseUrl, '/api/v1/cascade', { method: 'POST', body })
  if (options.json === true && options.follow !== true) {
    printJson(record)
    return 0
  }

  const plan = `${record.transforms[0]?.from ?? record.startStage} → ${record.stopStage}`
  process.stdout.write(`cascade ${record.id} "${record.title}" (${record.remote ? 'on the network' : 'in this node\'s sandbox'}, ${plan})\n`)
  if (options.follow !== true) {
    process.stdout.write(`follow it with: emdx cascade status ${record.id}\n`)
    return 0
  }
  return await follow(baseUrl, record)
}

function wholeNumber (value: string | undefined, flag: string): number | undefined {
  if (value === undefined) {
    return undefined
  }
  const number = Number(value)
  if (!Number.isInteger(number) || number <= 0) {
    throw new ConfigError(`invalid ${flag} "${value}": expected a positive whole number`)
  }
  return number
}

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Prints the cascade's events as they happen until it ends; returns 0 when it completed. */
async function follow (baseUrl: string, record: CascadeRecord): Promise<number> {
  const started = Date.parse(record.createdAt)
  const stamp = (): string => `[${formatClock(Date.now() - started)}]`
  let credits = 0

  for await (const event of streamEvents(baseUrl, record.id)) {
    const transform = 'from' in event && event.from !== undefined && 'to' in event ? `${event.from} → ${event.to}`.padEnd(20) : ''
    switch (event.type) {
      case 'stage_searching':
        process.stdout.write(`${stamp()} ${transform} looking for a provider${event.attempt > 1 ? ` (attempt ${event.attempt})` : ''}\n`)
        break
      case 'stage_dispatched':
        process.stdout.write(`${stamp()} ${transform} offered to ${shortPeer(event.provider)}\n`)
        break
      case 'stage_running':
        process.stdout.write(`${stamp()} ${transform} running on ${shortPeer(event.provider)}\n`)
        break
      case 'stage_progress':
        for (const line of event.lines.slice(-3)) {
          process.stdout.write(`${stamp()} ${transform}   ${line.slice(0, 160)}\n`)
        }
        break
      case 'stage_retrying':
        process.stdout.write(`${stamp()} ${transform} ${event.reason}; trying another provider in ${(event.delayMs / 1000).toFixed(1)} s\n`)
        break
      case 'stage_completed': {
        credits += event.credits ?? 0
        const standIn = await isStandInOutput(baseUrl, event.documentId)
        const cost = event.credits === undefined ? '' : `, ${(event.credits / 1000).toFixed(3)} credits`
        const branch = event.branch === undefined ? '' : `, branch ${event.branch}`
        process.stdout.write(`${stamp()} ${transform} done: document ${event.documentId} "${event.title}"${cost}${branch}${standIn ? ' (stand-in output, not a model\'s)' : ''}\n`)
        break
      }
      case 'cascade_completed':
        process.stdout.write(`cascade completed in ${formatDuration(Date.now() - started)}${credits > 0 ? `, ${(credits / 1000).toFixed(3)} credits spent` : ''}\n`)
        return 0
      case 'cascade_failed':
        process.stdout.write(`cascade failed${event.from === undefined ? '' : ` at ${event.from}`}: ${event.reason}\n`)
        return 1
      case 'cascade_cancelled':
        process.stdout.write('cascade cancelled\n')
        return 1
    }
  }
  process.stdout.write('the connection to the node ended before the cascade did; see emdx cascade status\n')
  return 1
}

async function isStandInOutput (baseUrl: string, documentId: number): Promise<boolean> {
  try {
    const document = await requestJson<KnowledgeDocument>(baseUrl, `/api/v1/documents/${documentId}`)
    return document.content.includes(STAND_IN_LABEL)
  } catch {
    return false
  }
}

/** Reads the node's event stream of one cascade, from its first event. */
async function * streamEvents (baseUrl: string, cascadeId: string): AsyncIterable<CascadeEvent> {
  let response: Response
  try {
    response = await fetch(`${baseUrl}/api/v1/events?cascade=${encodeURIComponent(cascadeId)}&since=0`)
  } catch (err) {
    throw new ApiRequestError(`cannot follow cascade ${cascadeId} at ${baseUrl}: ${(err as Error).message}`, { cause: err })
  }
  if (!response.ok || response.body === null) {
    throw new ApiRequestError(`cannot follow cascade ${cascadeId}: HTTP ${response.status}`)
  }

  const decoder = new TextDecoder()
  let buffered = ''
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true })
    let end = buffered.indexOf('\n\n')
    while (end >= 0) {
      const block = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      const data = block.split('\n').filter(line => line.startsWith('data: ')).map(line => line.slice(6)).join('\n')
      if (data !== '') {
        yield JSON.parse(data) as CascadeEvent
      }
      end = buffered.indexOf('\n\n')
    }
  }
}

async function showStatus (id: string | undefined, options: ApiTarget & { json?: boolean }): Promise<void> {
  const baseUrl = apiBaseUrl(options)
  if (id === undefined) {
    const { cascades } = await requestJson<{ cascades: CascadeRecord[] }>(baseUrl, '/api/v1/cascades?limit=20')
    if (options.json === true) {
      printJson({ cascades })
      return
    }
    process.stdout.write(cascades.length === 0 ? 'no cascades yet; start one with emdx cascade add "idea" --auto --remote p2p\n' : `${formatRunTable(cascades)}\n`)
    return
  }

  const record = await requestJson<CascadeRecord>(baseUrl, `/api/v1/cascade/${encodeURIComponent(id)}`)
  if (options.json === true) {
    printJson(record)
    return
  }
  process.stdout.write(`${formatRows([
    ['cascade', record.id],
    ['title', record.title],
    ['status', record.status + (record.error === undefined ? '' : `: ${record.error}`)],
    ['where', record.remote ? 'on the network' : 'in this node\'s sandbox'],
    ['repository', record.repo ?? 'none'],
    ['started', record.createdAt]
  ])}\n\n${formatTable(['STAGE', 'STATE', 'PROVIDER', 'DOCUMENT', 'CREDITS', 'ATTEMPTS'], record.transforms.map(transform => [
    `${transform.from} → ${transform.to}`,
    transform.state,
    transform.provider === undefined ? '' : shortPeer(transform.provider),
    transform.outputDocumentId === undefined ? '' : String(transform.outputDocumentId),
    transform.credits === undefined ? '' : (transform.credits / 1000).toFixed(3),
    String(transform.attempts.length)
  ]))}\n`)
}

async function showDocuments (target: string, options: ApiTarget & { json?: boolean, full?: boolean }): Promise<void> {
  const baseUrl = apiBaseUrl(options)
  if (/^\d+$/.test(target)) {
    const document = await requestJson<KnowledgeDocument>(baseUrl, `/api/v1/documents/${target}`)
    if (options.json === true) {
      printJson(document)
      return
    }
    process.stdout.write(`# ${document.title}\n(document ${document.id}, stage ${document.stage ?? 'none'}, parent ${document.parentId ?? 'none'})\n\n${document.content}\n`)
    return
  }
  if (!(STAGES as readonly string[]).includes(target)) {
    throw new ConfigError(`invalid stage "${target}": use one of ${STAGES.join(', ')}, or a document id`)
  }

  const { cascades } = await requestJson<{ cascades: CascadeRecord[] }>(baseUrl, '/api/v1/cascades?limit=100')
  const ids = cascades.flatMap(record => record.transforms.filter(transform => transform.to === target && transform.outputDocumentId !== undefined).map(transform => transform.outputDocumentId as number))
  const documents = await Promise.all(ids.map(async id => await requestJson<KnowledgeDocument>(baseUrl, `/api/v1/documents/${id}`)))
  if (options.json === true) {
    printJson({ documents })
    return
  }
  if (documents.length === 0) {
    process.stdout.write(`no cascade documents at stage ${target} yet\n`)
    return
  }
  for (const document of documents) {
    process.stdout.write(options.full === true ? `# ${document.title} (document ${document.id})\n\n${document.content}\n\n` : `${String(document.id).padStart(6)}  ${document.title}\n`)
  }
}

async function listRuns (options: ApiTarget & { json?: boolean, limit?: string }): Promise<void> {
  const limit = wholeNumber(options.limit, '--limit') ?? 20
  const { cascades } = await requestJson<{ cascades: CascadeRecord[] }>(apiBaseUrl(options), `/api/v1/cascades?limit=${limit}`)
  if (options.json === true) {
    printJson({ cascades })
    return
  }
  process.stdout.write(cascades.length === 0 ? 'no cascade runs yet\n' : `${formatRunTable(cascades)}\n`)
}

function formatRunTable (cascades: CascadeRecord[]): string {
  return formatTable(['ID', 'STATUS', 'STAGES', 'WHERE', 'STARTED', 'TITLE'], cascades.map(record => {
    const done = record.transforms.filter(transform => transform.state === 'completed').length
    return [
      record.id,
      record.status,
      `${done}/${record.transforms.length} (${record.startStage} → ${record.stopStage})`,
      record.remote ? 'p2p' : 'local',
      record.createdAt.replace('T', ' ').slice(0, 19),
      record.title.slice(0, 50)
    ]
  }))
}

function shortPeer (peerId: string): string {
  return peerId.length > 16 ? `${peerId.slice(0, 8)}…${peerId.slice(-6)}` : peerId
}

function formatClock (ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000))
  return `${String(Math.floor(seconds / 60)).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`
}
