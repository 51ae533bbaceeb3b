import { Option } from 'commander'
import { defaultDataDir, loadConfig } from '../../node/config.js'
import { createLogger } from '../../node/logger.js'
import { formatBytes } from '../../node/units.js'
import { VERSION } from '../../node/version.js'
import { formatRows } from '../output.js'
import { formatSandbox } from './status.js'
import type { SettingsInput } from '../../node/config.js'
import type { LogFormat } from '../../node/logger.js'
import type { Command } from 'commander'

interface StartOptions {
  dataDir?: string
  shareCpu?: string
  shareMem?: string
  port?: string
  listenHost?: string
  apiPort?: string
  bootstrap?: string[]
  mdns?: boolean
  share?: boolean
  runtime?: string
  requireRuntime?: string
  image?: string[]
  agentEgress?: string[]
  agentCommand?: string
  agentModel?: string
  agentApiKeyEnv?: string
  agentBaseUrl?: string
  price?: string
  spotCheckShare?: string
  logLevel?: string
  logFormat?: LogFormat
  stopWhenStdinCloses?: boolean
}

function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

export function registerStartCommand (program: Command): void {
  program.command('start')
    .description('join the emdx network and share this machine\'s idle CPU; runs in the foreground until Ctrl-C')
    .option('--share-cpu <n>', 'CPUs to share with the network, fractions allowed (default 1)')
    .option('--share-mem <size>', 'memory to share, such as 512m or 4g (default 2g, at most half of the machine)')
    .option('--port <port>', 'libp2p TCP port; 0 picks a free one (default 4777)')
    .option('--listen-host <address>', 'address libp2p listens on (default 0.0.0.0)')
    .option('--api-port <port>', 'port of the HTTP API and dashboard on 127.0.0.1 (default 7777)')
    .option('--data-dir <path>', 'folder for the identity key, peer store, DHT records and ledger', defaultDataDir())
    .option('--bootstrap <multiaddr>', 'peer to join the network through, ending in /p2p/<peer id>; repeat for several', collect)
    .option('--no-mdns', 'do not discover peers on the local network with mDNS')
    .option('--no-share', 'run nothing for others; only submit work')
    .addOption(new Option('--runtime <runtime>', 'sandbox: auto picks gVisor (runsc) when proven, then runc, then bubblewrap (default auto)').choices(['auto', 'runsc', 'runc', 'bwrap']))
    .addOption(new Option('--require-runtime <runtime>', 'share nothing unless the sandbox runs under this runtime').choices(['runsc']))
    .option('--image <name[=rootfs]>', 'image stages may run in, with its root folder for bubblewrap; repeat for several, the first is the default', collect)
    .option('--agent-egress <host:port>', 'model API an agent may reach through the node\'s proxy, such as api.anthropic.com:443; repeat for several (default: none)', collect)
    .option('--agent-command <json>', 'agent command as a JSON list; {prompt} and {model} are replaced (default: the Claude Code CLI in print mode)')
    .option('--agent-model <model>', 'model name passed to the agent (default sonnet)')
    .option('--agent-api-key-env <name>', 'environment variable holding the agent\'s API key, passed only into agent sandboxes (default ANTHROPIC_API_KEY)')
    .option('--agent-base-url <url>', 'model API base URL given to agents, such as a local stand-in')
    .option('--price <cpu,gib,tokens>', 'what this node charges, in millicredits per CPU second, per GiB second and per 1000 agent tokens (default 10,1,20)')
    .option('--spot-check-share <share>', 'share of stages, 0 to 1, checked with a canary or a second run once a provider is past probation; every stage of a provider on probation is checked (default 0.1)')
    .option('--log-level <level>', 'trace, debug, info, warn or error (default info, or EMDX_LOG_LEVEL)')
    .addOption(new Option('--log-format <format>', 'pretty for people, json for log collectors (default: pretty on a terminal)').choices(['pretty', 'json']))
    // For `devnet`: a node stops when the devnet process that started it dies.
    .addOption(new Option('--stop-when-stdin-closes').hideHelp())
    .action(async (options: StartOptions, command: Command) => {
      await runStart(options, command)
    })
}

/** Only the flags the user typed, so that defaults do not hide the config file. */
function explicitSettings (options: StartOptions, command: Command): SettingsInput {
  const given = (name: keyof StartOptions): boolean => command.getOptionValueSource(name) === 'cli'
  const settings: SettingsInput = {}
  if (given('shareCpu')) settings.shareCpu = options.shareCpu
  if (given('shareMem')) settings.shareMem = options.shareMem
  if (given('port')) settings.port = options.port
  if (given('listenHost')) settings.listenHost = options.listenHost
  if (given('apiPort')) settings.apiPort = options.apiPort
  if (given('bootstrap')) settings.bootstrap = options.bootstrap
  if (given('mdns')) settings.mdns = options.mdns
  if (given('share')) settings.share = options.share
  if (given('runtime')) settings.runtime = options.runtime
  if (given('requireRuntime')) settings.requireRuntime = options.requireRuntime
  if (given('image')) settings.image = options.image
  if (given('agentEgress')) settings.agentEgress = options.agentEgress
  if (given('agentCommand')) settings.agentCommand = options.agentCommand
  if (given('agentModel')) settings.agentModel = options.agentModel
  if (given('agentApiKeyEnv')) settings.agentApiKeyEnv = options.agentApiKeyEnv
  if (given('agentBaseUrl')) settings.agentBaseUrl = options.agentBaseUrl
  if (given('price')) settings.price = options.price
  if (given('spotCheckShare')) settings.spotCheckShare = options.spotCheckShare
  return settings
}

async function runStart (options: StartOptions, command: Command): Promise<void> {
  const config = await loadConfig(options.dataDir ?? defaultDataDir(), explicitSettings(options, command))
  const logger = createLogger({ level: options.logLevel, format: options.logFormat })

  // Loaded here, not at the top: the node's modules (libp2p, the Docker
  // client) take about a second to load, which other commands need not wait for.
  const { EmdxNode } = await import('../../node/node.js')
  const node = await EmdxNode.start({ config, logger })
  const status = node.status()
  const sharing = status.share.enabled
    ? `${status.share.cpus} CPU, ${formatBytes(status.share.memoryBytes)} memory`
    : (config.share ? 'off (no usable sandbox, see below)' : 'off (--no-share: this node only submits work)')
  process.stdout.write(`emdx-node ${VERSION} is running; press Ctrl-C to stop\n${formatRows([
    ['peer id', status.peerId],
    ['listening', status.addresses.join('\n')],
    ['API', `${status.apiUrl}/api/v1/status`],
    ['data dir', config.dataDir],
    ['sharing', sharing],
    ['sandbox', formatSandbox(status.sandbox)]
  ])}\n`)

  let signals = 0
  const shutdown = (signal: NodeJS.Signals): void => {
    signals++
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting without a clean stop')
      process.exit(130)
    }
    logger.info({ signal }, 'stopping; press Ctrl-C again to exit at once')
    node.stop().then(
      () => { process.exit(0) },
      (err: unknown) => {
        logger.error({ err }, 'the node failed to stop cleanly')
        process.exit(1)
      }
    )
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
  if (options.stopWhenStdinCloses === true) {
    process.stdin.on('end', () => { shutdown('SIGTERM') })
    process.stdin.on('error', () => { shutdown('SIGTERM') })
    process.stdin.resume()
  }
}
