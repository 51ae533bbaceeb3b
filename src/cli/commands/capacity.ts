import { formatBytes } from '../../node/units.js'
import { apiBaseUrl, requestJson } from '../api-client.js'
import { formatRows, formatTable, printJson } from '../output.js'
import { addApiOptions } from './status.js'
import type { CapacityRecordJson, CapacityResponse } from '../../api/capacity-routes.js'
import type { ApiTarget } from '../api-client.js'
import type { Command } from 'commander'

interface CapacityOptions extends ApiTarget {
  json?: boolean
  refresh?: boolean
}

export function registerCapacityCommand (program: Command): void {
  addApiOptions(program.command('capacity'))
    .description('show the capacity this node advertises and the providers it has seen on the network')
    .option('--no-refresh', 'show what the node has seen so far, without searching the network first')
    .action(async (options: CapacityOptions) => {
      const path = options.refresh === false ? '/api/v1/capacity' : '/api/v1/capacity?refresh=1'
      const capacity = await requestJson<CapacityResponse>(apiBaseUrl(options), path)
      if (options.json === true) {
        printJson(capacity)
        return
      }
      process.stdout.write(`${formatCapacity(capacity)}\n`)
    })
}

function formatPrice (record: CapacityRecordJson): string {
  return `${record.price.perCpuSecond}/${record.price.perGibSecond}/${record.price.perThousandTokens}`
}

export function formatCapacity (capacity: CapacityResponse): string {
  const lines: string[] = []
  const own = capacity.self
  if (own === null) {
    lines.push('this node: not sharing')
  } else {
    lines.push('this node:', formatRows([
      ['free CPUs', `${own.cpus.free} of ${own.cpus.total}`],
      ['free memory', `${formatBytes(own.memory.freeBytes)} of ${formatBytes(own.memory.totalBytes)}`],
      ['runtime', `${own.runtime.name} (${own.runtime.isolation} isolation)`],
      ['agents', own.agents.join(', ') || 'none'],
      ['images', own.images.join(', ') || 'none'],
      ['price', `${formatPrice(own)} millicredits per CPU second / GiB second / 1000 tokens`],
      ['record', `seq ${own.seq}, expires ${own.expiresAt}`]
    ]))
  }

  const { providers, totals } = capacity.network
  lines.push('', `network: ${totals.providers} provider${totals.providers === 1 ? '' : 's'} seen, ${totals.freeCpus} of ${totals.totalCpus} CPUs free, ${formatBytes(totals.freeMemoryBytes)} of ${formatBytes(totals.totalMemoryBytes)} memory free`)
  if (providers.length > 0) {
    lines.push(formatTable(
      ['PEER', 'FREE CPUS', 'FREE MEMORY', 'ISOLATION', 'PRICE', 'RTT'],
      providers.map(provider => [
        provider.peerId,
        `${provider.cpus.free}/${provider.cpus.total}`,
        formatBytes(provider.memory.freeBytes),
        provider.runtime.isolation,
        formatPrice(provider),
        `${provider.rttMs} ms`
      ])
    ))
  }
  return lines.join('\n')
}
