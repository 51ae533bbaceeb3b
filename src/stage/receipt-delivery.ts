import { peerIdFromString } from '@libp2p/peer-id'
import { DuplicateJobError } from '../credits/ledger.js'
import { countersignReceipt, verifyReceipt } from '../credits/receipt.js'
import { StageChannel, StageProtocolError } from './channel.js'
import { countersignedSchema, entrySchema, MAX_MESSAGE_BYTES } from './messages.js'
import type { LedgerEntry } from '../credits/ledger-entry.js'
import type { Receipt } from '../credits/receipt.js'
import type { Logger } from '../node/logger.js'
import type { StageLedger } from './executor-service.js'
import type { RemoteStageContext, ResultCheckpoint } from './requester.js'
import type { Libp2p } from '@libp2p/interface'

/**
 * `/emdx/receipt/1.0.0`: a requester that received a result but stopped
 * before countersigning (it crashed, or the stream broke) countersigns it
 * later from its checkpoint and delivers it here. The executor accepts a
 * receipt only if it carries the executor's own signature, so it can take
 * the job's terms from the receipt itself.
 */
export const RECEIPT_PROTOCOL = '/emdx/receipt/1.0.0'

const TIMEOUT_MS = 10_000

export interface ReceiptServiceInit {
  libp2p: Libp2p
  ledger: StageLedger
  logger: Logger
}

/** Serves late countersigned receipts; returns a function that stops serving. */
export async function serveReceiptDelivery (init: ReceiptServiceInit): Promise<() => Promise<void>> {
  await init.libp2p.handle(RECEIPT_PROTOCOL, async (stream, connection) => {
    const peer = connection.remotePeer.toString()
    const channel = new StageChannel(stream)
    try {
      const message = await channel.read({ countersigned: { schema: countersignedSchema, maxBytes: MAX_MESSAGE_BYTES.receipt } }, TIMEOUT_MS)
      const body = verifyReceipt(message.receipt, { countersigned: true })
      if (body.executor !== init.ledger.owner || body.requester !== peer) {
        throw new StageProtocolError('unexpected', `peer ${peer} delivered a receipt of job ${body.jobId} between other peers`)
      }

      const entry = await appendOnce(init.ledger, message.receipt)
      if (entry !== undefined) {
        await channel.write({ type: 'entry', entry })
      }
      if (message.entry !== undefined) {
        await init.ledger.recordWitness(message.entry).catch((err: unknown) => {
          init.logger.warn({ peer, err }, 'a late receipt came with a ledger entry that does not verify')
        })
      }
      await channel.close()
      init.logger.info({ peer, job: body.jobId }, 'recorded a receipt countersigned after the stage')
    } catch (err) {
      init.logger.warn({ peer, err }, 'rejected a late receipt')
      channel.abort(err as Error)
    }
  }, { maxInboundStreams: 8, runOnLimitedConnection: false })
  return async () => { await init.libp2p.unhandle(RECEIPT_PROTOCOL) }
}

/** Appends a receipt to the executor's ledger, with terms taken from the receipt it signed; undefined if it is there already. */
async function appendOnce (ledger: StageLedger, receipt: Receipt): Promise<LedgerEntry | undefined> {
  const body = verifyReceipt(receipt, { countersigned: true })
  try {
    return await ledger.append(receipt, {
      jobId: body.jobId,
      requester: body.requester,
      executor: body.executor,
      price: body.price,
      maxCredits: body.credits,
      resultHash: body.resultHash
    })
  } catch (err) {
    if (err instanceof DuplicateJobError) {
      return undefined
    }
    throw err
  }
}

/**
 * Countersigns a checkpointed receipt, appends it to this node's ledger
 * (once, whatever happened before the crash), and delivers it to the
 * executor. Delivery is best effort: the executor may be gone; the
 * requester's ledger records the debt either way.
 */
export async function settleFromCheckpoint (context: RemoteStageContext, checkpoint: ResultCheckpoint, signal?: AbortSignal): Promise<Receipt> {
  const countersigned = countersignReceipt(checkpoint.receipt, context.signer)
  let entry: LedgerEntry | undefined
  try {
    entry = await context.ledger.append(countersigned, checkpoint.terms)
  } catch (err) {
    if (!(err instanceof DuplicateJobError)) {
      throw err
    }
  }

  try {
    await deliverReceipt(context, checkpoint.executor, countersigned, entry, signal)
  } catch (err) {
    context.logger.warn({ job: checkpoint.jobId, peer: checkpoint.executor, err }, 'could not deliver the countersigned receipt to the executor')
  }
  return countersigned
}

async function deliverReceipt (context: RemoteStageContext, executor: string, receipt: Receipt, entry: LedgerEntry | undefined, signal?: AbortSignal): Promise<void> {
  const timeout = AbortSignal.timeout(TIMEOUT_MS)
  const stream = await context.libp2p.dialProtocol(peerIdFromString(executor), RECEIPT_PROTOCOL, { signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]) })
  const channel = new StageChannel(stream)
  try {
    await channel.write({ type: 'countersigned', receipt, entry })
    const answer = await channel.read({ entry: { schema: entrySchema, maxBytes: MAX_MESSAGE_BYTES.receipt } }, TIMEOUT_MS, signal).catch(() => undefined)
    if (answer !== undefined) {
      await context.ledger.recordWitness(answer.entry)
    }
    await channel.close()
  } catch (err) {
    channel.abort(err as Error)
    throw err
  }
}
