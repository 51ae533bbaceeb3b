import { apiBaseUrl, requestJson } from '../api-client.js'
import { formatRows, formatTable, printJson } from '../output.js'
import { addApiOptions } from './status.js'
import type { CreditsSummary, ReceiptSummary } from '../../api/credits-routes.js'
import type { ApiTarget } from '../api-client.js'
import type { Command } from 'commander'

interface CreditsOptions extends ApiTarget {
  json?: boolean
}

interface ReceiptsOptions extends CreditsOptions {
  verify?: boolean
  limit?: string
}

interface ReceiptsResponse {
  receipts: ReceiptSummary[]
  verification?: { valid: boolean, entries: number, balance: number, problem?: string }
}

export function registerCreditsCommands (program: Command): void {
  addApiOptions(program.command('credits'))
    .description('show the local node\'s credit balance, what it earned and spent, and its newest receipts')
    .action(async (options: CreditsOptions) => {
      const credits = await requestJson<CreditsSummary>(apiBaseUrl(options), '/api/v1/credits')
      if (options.json === true) {
        printJson(credits)
        return
      }
      process.stdout.write(`${formatCredits(credits)}\n`)
    })

  addApiOptions(program.command('receipts'))
    .description('list the local node\'s receipts, newest first')
    .option('--verify', 'replay the whole ledger chain and check every signature and link')
    .option('--limit <n>', 'number of receipts to list, 1 to 1000', '20')
    .action(async (options: ReceiptsOptions) => {
      const query = `?limit=${encodeURIComponent(options.limit ?? '20')}${options.verify === true ? '&verify=true' : ''}`
      const response = await requestJson<ReceiptsResponse>(apiBaseUrl(options), `/api/v1/receipts${query}`)
      if (options.json === true) {
        printJson(response)
      } else {
        process.stdout.write(`${formatReceipts(response)}\n`)
      }
      if (response.verification?.valid === false) {
        process.exitCode = 1
      }
    })
}

/** Formats millicredits as credits with three decimals. */
export function formatCredits (credits: CreditsSummary): string {
  const rows: Array<[string, string]> = [
    ['peer id', credits.peerId],
    ['balance', formatAmount(credits.balance)],
    ['starting grant', formatAmount(credits.grant)],
    ['earned', formatAmount(credits.earned)],
    ['spent', formatAmount(credits.spent)],
    ['ledger entries', String(credits.head.seq + 1)]
  ]
  const recent = credits.recent.length === 0 ? 'no receipts yet' : formatReceiptTable(credits.recent)
  return `${formatRows(rows)}\n\n${recent}`
}

export function formatReceipts (response: ReceiptsResponse): string {
  const lines = [response.receipts.length === 0 ? 'no receipts yet' : formatReceiptTable(response.receipts)]
  const verification = response.verification
  if (verification !== undefined) {
    lines.push(verification.valid
      ? `ledger verified: ${verification.entries} entries, every signature and link checked, balance ${formatAmount(verification.balance)}`
      : `ledger verification failed (${verification.entries} entries read): ${verification.problem ?? 'unknown problem'}`)
  }
  return lines.join('\n\n')
}

function formatReceiptTable (receipts: ReceiptSummary[]): string {
  const rows = receipts.map(receipt => [
    String(receipt.seq),
    receipt.appendedAt.replace('T', ' ').slice(0, 19),
    receipt.role,
    `${receipt.delta >= 0 ? '+' : ''}${formatAmount(receipt.delta)}`,
    receipt.stage,
    receipt.outcome,
    receipt.counterparty
  ])
  return formatTable(['SEQ', 'TIME (UTC)', 'ROLE', 'CREDITS', 'STAGE', 'OUTCOME', 'COUNTERPARTY'], rows)
}

function formatAmount (millicredits: number): string {
  return `${(millicredits / 1000).toFixed(3)} credits`.replace('-0.000', '0.000')
}
