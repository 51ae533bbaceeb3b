import { readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { ConfigError } from './errors.js'
import { formatBytes, parseSize } from './units.js'
import { DEFAULT_AGENT_API_KEY_ENV, DEFAULT_AGENT_COMMAND, DEFAULT_AGENT_MODEL } from '../exec/agent.js'
import { defaultImage, parseImage } from '../exec/images.js'
import { DEFAULT_SPOT_CHECK_SHARE } from '../reputation/spot-check.js'
import type { SandboxImage } from '../exec/images.js'
import type { Price } from '../credits/receipt.js'
import type { RuntimeSetting } from '../exec/create.js'

/** The settings a node runs with, after flags, the config file and defaults are merged. */
export interface NodeConfig {
  dataDir: string
  /** CPUs offered to the network; fractions are allowed (a CPU quota). */
  shareCpu: number
  /** Memory offered to the network, in bytes. */
  shareMem: number
  /** libp2p TCP port; 0 picks a free one. */
  port: number
  /** Address the libp2p TCP transport binds to. */
  listenHost: string
  /** HTTP API port on 127.0.0.1; 0 picks a free one. */
  apiPort: number
  bootstrap: string[]
  mdns: boolean
  /** False when the node only submits work and runs nothing for others. */
  share: boolean
  /** Sandbox runtime: `auto` picks gVisor, then runc, then bubblewrap. */
  runtime: RuntimeSetting
  /** When `runsc`, the node shares nothing unless its sandbox is gVisor. */
  requireRuntime?: 'runsc'
  /** Images stages may run in; the first is the default. */
  images: SandboxImage[]
  /** `host:port` pairs agents may reach through the node's egress proxy. */
  agentEgress: string[]
  /** The agent's command; `{prompt}` and `{model}` are replaced. */
  agentCommand: string[]
  agentModel: string
  /** Name of the environment variable holding the agent's API key; the key itself is never a setting. */
  agentApiKeyEnv: string
  /** Model API base URL given to agents, such as a local stand-in; the API's own when missing. */
  agentBaseUrl?: string
  /** Price this node charges for stages, in millicredits. */
  price: Price
  /**
   * Share of stages, 0 to 1, that this node spot checks once a provider is
   * past probation. Every stage of a provider on probation is checked.
   */
  spotCheckShare: number
}

/**
 * Settings as given by a person, before validation: flag values are strings,
 * config file values may be anything JSON allows.
 */
export interface SettingsInput {
  shareCpu?: unknown
  shareMem?: unknown
  port?: unknown
  listenHost?: unknown
  apiPort?: unknown
  bootstrap?: unknown
  mdns?: unknown
  share?: unknown
  runtime?: unknown
  requireRuntime?: unknown
  image?: unknown
  agentEgress?: unknown
  agentCommand?: unknown
  agentModel?: unknown
  agentApiKeyEnv?: unknown
  agentBaseUrl?: unknown
  price?: unknown
  spotCheckShare?: unknown
}

export const CONFIG_FILE_NAME = 'config.json'
export const DEFAULT_PORT = 4777
export const DEFAULT_API_PORT = 7777
export const DEFAULT_SHARE_CPU = 1
export const DEFAULT_SHARE_MEM = 2 * 1024 ** 3
/**
 * The default price, in millicredits: 10 per CPU second, 1 per GiB second,
 * 20 per 1000 agent tokens. A one-minute agent stage of 5000 tokens costs
 * about 0.8 credits, so the starting grant of 100 credits buys over a
 * hundred of them.
 */
export const DEFAULT_PRICE: Price = { perCpuSecond: 10, perGibSecond: 1, perThousandTokens: 20 }

const settingNames: Array<keyof SettingsInput> = ['shareCpu', 'shareMem', 'port', 'listenHost', 'apiPort', 'bootstrap', 'mdns', 'share',
  'runtime', 'requireRuntime', 'image', 'agentEgress', 'agentCommand', 'agentModel', 'agentApiKeyEnv', 'agentBaseUrl', 'price', 'spotCheckShare']

const flagNames: Record<keyof SettingsInput, string> = {
  shareCpu: '--share-cpu',
  shareMem: '--share-mem',
  port: '--port',
  listenHost: '--listen-host',
  apiPort: '--api-port',
  bootstrap: '--bootstrap',
  mdns: '--no-mdns',
  share: '--no-share',
  runtime: '--runtime',
  requireRuntime: '--require-runtime',
  image: '--image',
  agentEgress: '--agent-egress',
  agentCommand: '--agent-command',
  agentModel: '--agent-model',
  agentApiKeyEnv: '--agent-api-key-env',
  agentBaseUrl: '--agent-base-url',
  price: '--price',
  spotCheckShare: '--spot-check-share'
}

/** The machine facts that bound what a node may share; tests pass their own. */
export interface MachineLimits {
  cpus: number
  memoryBytes: number
}

export function machineLimits (): MachineLimits {
  return { cpus: os.availableParallelism(), memoryBytes: os.totalmem() }
}

export function defaultDataDir (): string {
  return path.join(os.homedir(), '.emdx-node')
}

/**
 * Reads `config.json` from the data directory. A missing file is an empty
 * config; a file that is not a JSON object, or that has a key this version
 * does not know, is an error naming the file.
 */
export async function readConfigFile (dataDir: string): Promise<SettingsInput> {
  const file = path.join(dataDir, CONFIG_FILE_NAME)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return {}
    }
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}; fix its permissions or remove it`, { cause: err })
  }

  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON (${(err as Error).message}); fix it or remove it to use the defaults`, { cause: err })
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${file} must contain a JSON object such as {"shareCpu": 2}`)
  }

  for (const key of Object.keys(parsed)) {
    if (!settingNames.includes(key as keyof SettingsInput)) {
      throw new ConfigError(`config file ${file} has an unknown setting "${key}"; known settings are ${settingNames.join(', ')}`)
    }
  }
  return parsed as SettingsInput
}

/**
 * Merges flags over the config file over defaults and validates the result.
 * `flags` holds only the flags the user gave, so that unset flags do not hide
 * the config file.
 */
export async function loadConfig (dataDir: string, flags: SettingsInput, limits: MachineLimits = machineLimits()): Promise<NodeConfig> {
  const resolvedDataDir = path.resolve(dataDir)
  const file = await readConfigFile(resolvedDataDir)
  const configFile = path.join(resolvedDataDir, CONFIG_FILE_NAME)

  const pick = (name: keyof SettingsInput): { value: unknown, source: string } | undefined => {
    if (flags[name] !== undefined) {
      return { value: flags[name], source: flagNames[name] }
    }
    if (file[name] !== undefined) {
      return { value: file[name], source: `"${name}" in ${configFile}` }
    }
    return undefined
  }

  return {
    dataDir: resolvedDataDir,
    shareCpu: validateShareCpu(pick('shareCpu'), limits),
    shareMem: validateShareMem(pick('shareMem'), limits),
    port: validatePort(pick('port'), DEFAULT_PORT, '--port'),
    listenHost: validateHost(pick('listenHost')),
    apiPort: validatePort(pick('apiPort'), DEFAULT_API_PORT, '--api-port'),
    bootstrap: validateBootstrap(pick('bootstrap')),
    mdns: validateBoolean(pick('mdns'), true),
    share: validateBoolean(pick('share'), true),
    price: validatePrice(pick('price')),
    spotCheckShare: validateSpotCheckShare(pick('spotCheckShare')),
    ...validateSandboxSettings(pick)
  }
}

type SandboxSettings = Pick<NodeConfig, 'runtime' | 'requireRuntime' | 'images' | 'agentEgress' | 'agentCommand' | 'agentModel' | 'agentApiKeyEnv' | 'agentBaseUrl'>

function validateSandboxSettings (pick: (name: keyof SettingsInput) => Setting | undefined): SandboxSettings {
  const settings: SandboxSettings = {
    runtime: validateChoice(pick('runtime'), ['auto', 'runsc', 'runc', 'bwrap'], 'auto') as RuntimeSetting,
    images: validateImages(pick('image')),
    agentEgress: validateEgress(pick('agentEgress')),
    agentCommand: validateCommand(pick('agentCommand')),
    agentModel: validateName(pick('agentModel'), DEFAULT_AGENT_MODEL, /^[A-Za-z0-9._:@-]{1,100}$/, 'a model name such as sonnet'),
    agentApiKeyEnv: validateName(pick('agentApiKeyEnv'), DEFAULT_AGENT_API_KEY_ENV, /^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name such as ANTHROPIC_API_KEY')
  }
  const requireRuntime = pick('requireRuntime')
  if (requireRuntime !== undefined) {
    settings.requireRuntime = validateChoice(requireRuntime, ['runsc'], 'runsc') as 'runsc'
  }
  const baseUrl = pick('agentBaseUrl')
  if (baseUrl !== undefined) {
    settings.agentBaseUrl = validateUrl(baseUrl)
  }
  return settings
}

function validateChoice (setting: Setting | undefined, choices: string[], defaultValue: string): string {
  if (setting === undefined) {
    return defaultValue
  }
  if (typeof setting.value !== 'string' || !choices.includes(setting.value)) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: expected one of ${choices.join(', ')}`)
  }
  return setting.value
}

function stringList (setting: Setting, example: string): string[] {
  const list = typeof setting.value === 'string' ? [setting.value] : setting.value
  if (!Array.isArray(list) || list.some(entry => typeof entry !== 'string')) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: expected a list of strings such as ${example}`)
  }
  return list as string[]
}

function validateImages (setting: Setting | undefined): SandboxImage[] {
  if (setting === undefined) {
    return [defaultImage()]
  }
  const example = 'emdx-sandbox-test:latest=/path/to/rootfs'
  return stringList(setting, example).map(entry => {
    const image = parseImage(entry)
    if (image === undefined) {
      throw new ConfigError(`invalid ${setting.source} "${entry}": expected NAME or NAME=ABSOLUTE_ROOTFS_FOLDER, for example ${example}`)
    }
    return image
  })
}

function validateEgress (setting: Setting | undefined): string[] {
  if (setting === undefined) {
    return []
  }
  return stringList(setting, 'api.anthropic.com:443').map(entry => {
    const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry)
    if (match == null || Number(match[2]) < 1 || Number(match[2]) > 65535) {
      throw new ConfigError(`invalid ${setting.source} "${entry}": expected HOST:PORT such as api.anthropic.com:443`)
    }
    return entry.toLowerCase()
  })
}

function validateCommand (setting: Setting | undefined): string[] {
  if (setting === undefined) {
    return DEFAULT_AGENT_COMMAND
  }
  let value = setting.value
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value)
    } catch {
      value = undefined
    }
  }
  if (!Array.isArray(value) || value.length === 0 || value.some(part => typeof part !== 'string')) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: expected a JSON list of strings such as ["claude","--print","{prompt}","--model","{model}"]`)
  }
  return value as string[]
}

function validateName (setting: Setting | undefined, defaultValue: string, pattern: RegExp, expected: string): string {
  if (setting === undefined) {
    return defaultValue
  }
  if (typeof setting.value !== 'string' || !pattern.test(setting.value)) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: expected ${expected}`)
  }
  return setting.value
}

function validateUrl (setting: Setting): string {
  let url: URL | undefined
  try {
    url = new URL(String(setting.value))
  } catch {
    url = undefined
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: expected an http or https URL such as http://127.0.0.1:8080`)
  }
  return String(setting.value)
}

interface Setting {
  value: unknown
  source: string
}

function show (value: unknown): string {
  return typeof value === 'string' ? `"${value}"` : JSON.stringify(value)
}

function validateShareCpu (setting: Setting | undefined, limits: MachineLimits): number {
  if (setting === undefined) {
    return Math.min(DEFAULT_SHARE_CPU, limits.cpus)
  }

  const cpus = typeof setting.value === 'string' && setting.value.trim() !== '' ? Number(setting.value) : setting.value
  if (typeof cpus !== 'number' || !Number.isFinite(cpus)) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: expected a number of CPUs, for example --share-cpu 2`)
  }
  if (cpus <= 0) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: share at least 0.1 CPU, or pass --no-share to only submit work`)
  }
  if (cpus < 0.1) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: the smallest share is 0.1 CPU`)
  }
  if (cpus > limits.cpus) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: this machine has ${limits.cpus} CPUs; share at most ${limits.cpus}`)
  }
  return cpus
}

function validateShareMem (setting: Setting | undefined, limits: MachineLimits): number {
  if (setting === undefined) {
    return Math.min(DEFAULT_SHARE_MEM, Math.floor(limits.memoryBytes / 2))
  }

  const bytes = typeof setting.value === 'string'
    ? parseSize(setting.value)
    : (typeof setting.value === 'number' && Number.isFinite(setting.value) && setting.value >= 0 ? setting.value : undefined)
  if (bytes === undefined) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: expected a size such as 512m or 4g (binary units: k, m, g, t)`)
  }
  if (bytes < 64 * 1024 ** 2) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: share at least 64m, or pass --no-share to only submit work`)
  }
  if (bytes > limits.memoryBytes) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: this machine has ${formatBytes(limits.memoryBytes)} of memory; share less`)
  }
  return bytes
}

function validatePort (setting: Setting | undefined, defaultPort: number, flag: string): number {
  if (setting === undefined) {
    return defaultPort
  }

  const port = typeof setting.value === 'string' && /^\d+$/.test(setting.value.trim()) ? Number(setting.value) : setting.value
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: expected a TCP port from 1 to 65535 (0 picks a free port), for example ${flag} ${defaultPort}`)
  }
  return port
}

function validateHost (setting: Setting | undefined): string {
  if (setting === undefined) {
    return '0.0.0.0'
  }

  const host = setting.value
  if (typeof host !== 'string' || !/^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]+)$/.test(host)) {
    throw new ConfigError(`invalid ${setting.source} ${show(host)}: expected an IPv4 or IPv6 address such as 127.0.0.1 or 0.0.0.0`)
  }
  return host
}

function validateBootstrap (setting: Setting | undefined): string[] {
  if (setting === undefined) {
    return []
  }

  const list = typeof setting.value === 'string' ? [setting.value] : setting.value
  if (!Array.isArray(list)) {
    throw new ConfigError(`invalid ${setting.source} ${show(list)}: expected a list of multiaddrs`)
  }
  return list.map(entry => validateBootstrapAddress(entry, setting.source))
}

function validateBootstrapAddress (entry: unknown, source: string): string {
  const example = '/ip4/127.0.0.1/tcp/4777/p2p/12D3KooW...'
  if (typeof entry !== 'string') {
    throw new ConfigError(`invalid ${source} ${show(entry)}: expected a multiaddr string such as ${example}`)
  }

  let components: Array<{ name: string }>
  try {
    components = multiaddr(entry).getComponents()
  } catch (err) {
    throw new ConfigError(`invalid ${source} "${entry}": not a multiaddr (${(err as Error).message}); expected for example ${example}`, { cause: err })
  }
  if (!components.some(component => component.name === 'p2p')) {
    throw new ConfigError(`invalid ${source} "${entry}": a bootstrap address must end with /p2p/<peer id>, for example ${example}`)
  }
  return entry
}

/**
 * Reads a price as `CPU,GIB,TOKENS` (three whole numbers of millicredits:
 * per CPU second, per GiB second, per 1000 agent tokens), or in the config
 * file as an object with those three fields.
 */
function validatePrice (setting: Setting | undefined): Price {
  if (setting === undefined) {
    return DEFAULT_PRICE
  }
  const example = '--price 10,1,20 (millicredits per CPU second, per GiB second, per 1000 tokens)'
  const value = setting.value
  const parts = typeof value === 'string'
    ? value.split(',').map(part => part.trim())
    : (value !== null && typeof value === 'object' ? [(value as Record<string, unknown>).perCpuSecond, (value as Record<string, unknown>).perGibSecond, (value as Record<string, unknown>).perThousandTokens] : [])
  const numbers = parts.map(part => typeof part === 'string' && /^\d+$/.test(part) ? Number(part) : part)
  if (numbers.length !== 3 || numbers.some(part => typeof part !== 'number' || !Number.isSafeInteger(part) || part < 0)) {
    throw new ConfigError(`invalid ${setting.source} ${show(value)}: expected three whole numbers, for example ${example}`)
  }
  const [perCpuSecond, perGibSecond, perThousandTokens] = numbers as [number, number, number]
  return { perCpuSecond, perGibSecond, perThousandTokens }
}

function validateSpotCheckShare (setting: Setting | undefined): number {
  if (setting === undefined) {
    return DEFAULT_SPOT_CHECK_SHARE
  }
  const share = typeof setting.value === 'string' && setting.value.trim() !== '' ? Number(setting.value) : setting.value
  if (typeof share !== 'number' || !Number.isFinite(share) || share < 0 || share > 1) {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: expected a share from 0 to 1, for example --spot-check-share 0.1 to check one stage in ten`)
  }
  return share
}

function validateBoolean (setting: Setting | undefined, defaultValue: boolean): boolean {
  if (setting === undefined) {
    return defaultValue
  }
  if (typeof setting.value !== 'boolean') {
    throw new ConfigError(`invalid ${setting.source} ${show(setting.value)}: expected true or false`)
  }
  return setting.value
}
