/**
 * `/emdx/lost-jobs/1.0.0`: an executor that was killed while stages ran
 * sends their requesters a notice, after its restart, that those jobs are
 * lost. The
 * executor keeps each running job (job id, requester) in its database
 * until the job ends, so the records left at start are the lost jobs. It
 * dials each requester and writes one length-prefixed message with the job
 * ids. The requester checks that it sent each job to that peer, because the
 * connection authenticates the executor. Then it logs the notice and writes
 * an acknowledgement. A notice changes no trust, because the broken stream
 * already counted as a failure of the attempt.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { z } from 'zod'
import { textSublevel } from '../node/data-dir.js'
import { decodeCanonical, encodeCanonical } from '../records/canonical.js'
import type { RootDatabase, TextSublevel } from '../node/data-dir.js'
import type { Logger } from '../node/logger.js'
import type { Libp2p, Stream } from '@libp2p/interface'

export const LOST_JOBS_PROTOCOL = '/emdx/lost-jobs/1.0.0'
/** Job ids in one notice; an executor with more lost jobs of one requester sends several. */
export const MAX_JOBS_PER_NOTICE = 64
/** Largest notice or acknowledgement, in bytes: 64 job ids of 32 hex digits and the encoding. */
export const MAX_NOTICE_BYTES = 4096
/** Deadline of each read and write of an exchange. */
export const NOTICE_TIMEOUT_MS = 10_000
/** Waits between delivery attempts to a requester that cannot be reached; the last is the last attempt. */
export const DELIVERY_DELAYS_MS = [0, 1_000, 3_000, 10_000, 30_000, 60_000]

const jobIdSchema = z.string().regex(/^[0-9a-f]{32}$/, 'expected 32 lower-case hex digits')
const noticeSchema = z.strictObject({ type: z.literal('lost-jobs'), jobIds: z.array(jobIdSchema).min(1).max(MAX_JOBS_PER_NOTICE) })
const ackSchema = z.strictObject({ type: z.literal('lost-jobs-ack'), known: z.number().int().nonnegative().max(MAX_JOBS_PER_NOTICE) })
const runningJobSchema = z.strictObject({ requester: z.string().min(1).max(128), startedAt: z.number().int().nonnegative() })

/** A job that was running on this executor when the node stopped without ending it. */
export interface LostJob {
  jobId: string
  requester: string
  startedAt: number
}

/**
 * The executor's record of the jobs it is running, in the `running-jobs`
 * sublevel. A job is added before it is accepted and removed when it ends
 * on any path, so after a crash the records left are the jobs it lost.
 */
export class RunningJobs {
  private readonly store: TextSublevel
  private readonly logger: Logger

  constructor (database: RootDatabase, logger: Logger) {
    this.store = textSublevel(database, 'running-jobs')
    this.logger = logger
  }

  async add (jobId: string, requester: string): Promise<void> {
    await this.store.put(jobId, JSON.stringify({ requester, startedAt: Date.now() }))
  }

  async remove (jobId: string): Promise<void> {
    await this.store.del(jobId)
  }

  /** Returns the jobs recorded as running; a record that does not parse is dropped with a warning. */
  async list (): Promise<LostJob[]> {
    const jobs: LostJob[] = []
    for await (const [jobId, value] of this.store.iterator()) {
      const parsed = jobIdSchema.safeParse(jobId).success ? runningJobSchema.safeParse(parseJson(value)) : undefined
      if (parsed?.success !== true) {
        this.logger.warn({ job: jobId.slice(0, 64) }, 'dropped a running-job record that cannot be read')
        await this.store.del(jobId)
        continue
      }
      jobs.push({ jobId, ...parsed.data })
    }
    return jobs
  }
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

export interface LostJobReportInit {
  libp2p: Pick<Libp2p, 'dialProtocol'>
  jobs: RunningJobs
  logger: Logger
  signal?: AbortSignal
  delaysMs?: number[]
}

/**
 * Reports the given lost jobs to their requesters, each requester in the
 * background with retries, and removes each job's record once its
 * requester acknowledged it or the last attempt failed.
 */
export function reportLostJobs (lost: LostJob[], init: LostJobReportInit): Promise<void> {
  const byRequester = new Map<string, string[]>()
  for (const job of lost) {
    byRequester.set(job.requester, [...(byRequester.get(job.requester) ?? []), job.jobId])
  }
  const deliveries = [...byRequester].map(async ([requester, jobIds]) => {
    for (let start = 0; start < jobIds.length; start += MAX_JOBS_PER_NOTICE) {
      await deliverNotice(requester, jobIds.slice(start, start + MAX_JOBS_PER_NOTICE), init)
    }
  })
  return Promise.all(deliveries).then(() => {})
}

async function deliverNotice (requester: string, jobIds: string[], init: LostJobReportInit): Promise<void> {
  const delays = init.delaysMs ?? DELIVERY_DELAYS_MS
  const logger = init.logger.child({ peer: requester })
  for (const [attempt, delayMs] of delays.entries()) {
    try {
      await sleep(delayMs, undefined, { signal: init.signal })
      const known = await sendNotice(init.libp2p, requester, jobIds, init.signal)
      logger.info({ jobs: jobIds, known }, 'reported jobs lost in a restart to their requester')
      break
    } catch (err) {
      if (init.signal?.aborted === true) {
        return
      }
      const last = attempt === delays.length - 1
      logger[last ? 'warn' : 'debug']({ jobs: jobIds, attempt: attempt + 1, err }, last ? 'gave up reporting lost jobs to their requester' : 'failed to report lost jobs; retrying')
    }
  }
  for (const jobId of jobIds) {
    await init.jobs.remove(jobId)
  }
}

async function sendNotice (libp2p: LostJobReportInit['libp2p'], requester: string, jobIds: string[], signal?: AbortSignal): Promise<number> {
  const deadline = AbortSignal.timeout(NOTICE_TIMEOUT_MS)
  const noticeSignal = signal === undefined ? deadline : AbortSignal.any([signal, deadline])
  const stream = await libp2p.dialProtocol(peerIdFromString(requester), LOST_JOBS_PROTOCOL, { signal: noticeSignal })
  const messages = lpStream(stream, { maxDataLength: MAX_NOTICE_BYTES })
  try {
    await messages.write(encodeCanonical({ type: 'lost-jobs', jobIds }), { signal: noticeSignal })
    const ack = ackSchema.parse(decodeCanonical((await messages.read({ signal: noticeSignal })).subarray(), MAX_NOTICE_BYTES))
    await stream.close({ signal: noticeSignal })
    return ack.known
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

/** A notice a requester accepted: the executor lost these jobs of this node. */
export interface LostJobNotice {
  executor: string
  jobIds: string[]
  at: number
}

/**
 * The requester's record of which provider each recent job went to, so that
 * a notice is accepted only from the executor a job was sent to. It keeps
 * the newest `capacity` jobs.
 */
export class SentJobs {
  private readonly jobs = new Map<string, string>()
  private readonly capacity: number

  constructor (capacity = 10_000) {
    this.capacity = capacity
  }

  record (jobId: string, executor: string): void {
    this.jobs.set(jobId, executor)
    if (this.jobs.size > this.capacity) {
      const oldest = this.jobs.keys().next().value
      if (oldest !== undefined) {
        this.jobs.delete(oldest)
      }
    }
  }

  executorOf (jobId: string): string | undefined {
    return this.jobs.get(jobId)
  }
}

export interface LostJobServiceInit {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>
  sent: SentJobs
  logger: Logger
}

/** The requester's side: receives notices, checks them and keeps the newest ones for the API and tests. */
export class LostJobNotices {
  /** Notices accepted, newest last, at most 100. */
  readonly received: LostJobNotice[] = []
  /** Streams reset because of a bad, oversized or late message. */
  badMessages = 0
  private readonly init: LostJobServiceInit

  constructor (init: LostJobServiceInit) {
    this.init = init
  }

  async start (): Promise<void> {
    await this.init.libp2p.handle(LOST_JOBS_PROTOCOL, async (stream, connection) => {
      await this.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: 2, runOnLimitedConnection: false })
  }

  async stop (): Promise<void> {
    await this.init.libp2p.unhandle(LOST_JOBS_PROTOCOL)
  }

  private async serve (stream: Stream, executor: string): Promise<void> {
    const signal = AbortSignal.timeout(NOTICE_TIMEOUT_MS)
    const messages = lpStream(stream, { maxDataLength: MAX_NOTICE_BYTES })
    try {
      const notice = noticeSchema.parse(decodeCanonical((await messages.read({ signal })).subarray(), MAX_NOTICE_BYTES))
      const known = notice.jobIds.filter(jobId => this.init.sent.executorOf(jobId) === executor)
      if (known.length > 0) {
        this.received.push({ executor, jobIds: known, at: Date.now() })
        this.received.splice(0, Math.max(0, this.received.length - 100))
        this.init.logger.info({ peer: executor, jobs: known }, 'the executor lost these jobs when it stopped; they were already counted as failed attempts')
      }
      if (known.length < notice.jobIds.length) {
        this.init.logger.debug({ peer: executor, unknown: notice.jobIds.length - known.length }, 'ignored lost-job ids this node did not send to that executor')
      }
      await messages.write(encodeCanonical({ type: 'lost-jobs-ack', known: known.length }), { signal })
      await stream.close({ signal })
    } catch (err) {
      this.badMessages++
      this.init.logger.warn({ peer: executor, err, badMessages: this.badMessages }, 'reset a lost-jobs stream')
      stream.abort(err as Error)
    }
  }
}
