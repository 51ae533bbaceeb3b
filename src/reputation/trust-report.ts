import { z } from 'zod'
import { EmdxError } from '../node/errors.js'
import { decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { SIGNATURE_BYTES, verifySignature } from '../records/signature.js'
import type { Signer } from '../records/signature.js'

/** A trust report that is malformed, too large or wrongly signed. */
export class TrustReportError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_TRUST_REPORT', message, options)
  }
}

export const TRUST_REPORT_VERSION = 1
/** A report names at most this many peers: the reporter's most trusted ones. */
export const MAX_TRUST_REPORT_PEERS = 256
/** Upper bound of an encoded report; 256 peers take about 15 KiB. */
export const MAX_TRUST_REPORT_BYTES = 20 * 1024
/** Weights are integer parts per million, so that the encoding is exact. */
export const TRUST_WEIGHT_SCALE = 1_000_000

const peerIdText = z.string().min(40).max(100).regex(/^[1-9A-HJ-NP-Za-km-z]+$/, 'expected a base58 peer id')

const trustReportBodySchema = z.strictObject({
  version: z.literal(TRUST_REPORT_VERSION),
  reporter: peerIdText,
  /** When the reporter made it, in ms since the epoch. */
  time: z.number().int().positive().max(8.64e15),
  /** [peer, weight in parts per million], sorted by peer id, each peer once. */
  trust: z.array(z.tuple([peerIdText, z.number().int().min(1).max(TRUST_WEIGHT_SCALE)])).max(MAX_TRUST_REPORT_PEERS)
}).superRefine((body, context) => {
  let total = 0
  for (let index = 0; index < body.trust.length; index++) {
    const [peer, weight] = body.trust[index]!
    total += weight
    if (peer === body.reporter) {
      context.addIssue({ code: 'custom', message: 'a report must not name its reporter' })
    }
    if (index > 0 && body.trust[index - 1]![0] >= peer) {
      context.addIssue({ code: 'custom', message: 'peers must be sorted and unique' })
    }
  }
  // Rounding each weight may add up to one part per peer.
  if (total > TRUST_WEIGHT_SCALE + body.trust.length) {
    context.addIssue({ code: 'custom', message: `weights add up to ${total}, over ${TRUST_WEIGHT_SCALE}` })
  }
})

const signedReportSchema = z.strictObject({
  body: z.instanceof(Uint8Array),
  signature: z.instanceof(Uint8Array).refine(bytes => bytes.byteLength === SIGNATURE_BYTES, `expected ${SIGNATURE_BYTES} bytes`)
})

/** A verified trust report: one peer's normalised local trust. */
export interface TrustReport {
  reporter: string
  time: number
  /** Weights from 0 to 1 that add up to at most 1. */
  trust: Map<string, number>
}

/**
 * Signs a report of the given local trust vector and returns its encoding.
 * Only the MAX_TRUST_REPORT_PEERS most trusted peers are kept, renormalised.
 */
export function createTrustReport (signer: Signer, vector: ReadonlyMap<string, number>, time: number): Uint8Array {
  const kept = [...vector]
    .filter(([peer, weight]) => peer !== signer.peerId && weight > 0 && Number.isFinite(weight))
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, MAX_TRUST_REPORT_PEERS)
  const total = kept.reduce((sum, [, weight]) => sum + weight, 0)
  const trust = kept
    .map(([peer, weight]): [string, number] => [peer, Math.max(1, Math.round(weight / total * TRUST_WEIGHT_SCALE))])
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))

  const body = encodeCanonical(trustReportBodySchema.parse({ version: TRUST_REPORT_VERSION, reporter: signer.peerId, time, trust }))
  return encodeCanonical({ body, signature: signer.sign('trust-report', body) })
}

/** Decodes a report received from anyone and checks its limits and signature. */
export function decodeTrustReport (bytes: Uint8Array): TrustReport {
  let signed: z.infer<typeof signedReportSchema>
  let body: z.infer<typeof trustReportBodySchema>
  try {
    signed = signedReportSchema.parse(decodeCanonical(bytes, MAX_TRUST_REPORT_BYTES + 128))
    body = trustReportBodySchema.parse(decodeCanonical(signed.body, MAX_TRUST_REPORT_BYTES))
  } catch (err) {
    const detail = err instanceof z.ZodError ? z.prettifyError(err) : (err as Error).message
    throw new TrustReportError(`trust report is not valid: ${detail}`, { cause: err })
  }

  if (!verifySignature('trust-report', signed.body, signed.signature, body.reporter)) {
    throw new TrustReportError(`trust report is not signed by its reporter ${body.reporter}`)
  }
  return {
    reporter: body.reporter,
    time: body.time,
    trust: new Map(body.trust.map(([peer, weight]) => [peer, weight / TRUST_WEIGHT_SCALE]))
  }
}
