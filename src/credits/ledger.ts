/**
 * The credit ledger of one node: its own append-only chain of signed entries,
 * one per double-signed receipt, plus what it has seen of other nodes' chains.
 *
 * Storage: a sublevel `ledger` of the node's root database. Every append is
 * one atomic batch (entry with its receipt, job index, head with the cached
 * balance), so a crash leaves either the whole entry or none of it.
 *
 * API:
 * - `Ledger.open(init)` replays the chain (form, links, roles and sums) and
 *   checks the cached head against it; a mismatch is a LedgerCorruptError.
 * - `append(receipt, terms)` verifies the receipt and appends this node's
 *   signed entry for it; a bad receipt appends nothing.
 * - `balance()`, `head()`: the balance (grant + earned - spent) and the head
 *   (seq and hash) that goes into the capacity record.
 * - `verify()` replays the chain and checks every signature.
 * - `recent(limit)`: the newest entries with their receipts.
 * - `exportSegment(fromSeq)`: links to send to a node that checks our balance.
 * - `verifiedChain(owner)`: how much of a peer's chain this node verified.
 * - `verifiedBy(peer)`, `noteVerifiedBy(peer, seq)`: how much of this node's
 *   chain a peer verified, as far as this process saw; a hint only.
 * - `importSegment(segment)`: verifies a peer's segment on top of what this
 *   node verified before, keeps its entries as witnesses and returns the
 *   peer's chain state with any fork proof found.
 * - `recordWitness(entry)`: keeps a counterparty's signed entry; returns a
 *   fork proof when it conflicts with one held for the same seq.
 * - `recordForkProof(proof)`, `forkProofs()`, `isForker(peerId)`.
 *
 * Admission (`admitRequester` in admission.ts) combines `importSegment` with
 * the requester's trust.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import { z } from 'zod'
import { EmdxError } from '../node/errors.js'
import { bytesEqual, decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { STARTING_GRANT } from './admission.js'
import { chainBalance, emptyChainState, verifyChainSegment } from './chain.js'
import { createForkProof, decodeForkProof, encodeForkProof } from './fork-proof.js'
import { LedgerEntryError, decodeLedgerEntryBody, ledgerEntryHash, ledgerEntrySchema, signLedgerEntry, verifyLedgerEntry } from './ledger-entry.js'
import { ReceiptError, checkReceiptMatchesJob, decodeReceiptBody, receiptHash, receiptSchema, verifyReceipt } from './receipt.js'
import type { ChainLink, ChainSegment, ChainState } from './chain.js'
import type { ForkProof } from './fork-proof.js'
import type { LedgerEntry, LedgerEntryBody } from './ledger-entry.js'
import type { JobTerms, Receipt, ReceiptBody } from './receipt.js'
import type { Logger } from '../node/logger.js'
import type { Signer } from '../records/signature.js'

/** The stored ledger does not add up or cannot be decoded; it is never repaired silently. */
export class LedgerCorruptError extends EmdxError {
  /** The database folder that contains the ledger. */
  readonly file: string

  constructor (file: string, message: string, options?: ErrorOptions) {
    super('ERR_LEDGER_CORRUPT', message, options)
    this.file = file
  }
}

/** A job id that the ledger already holds. */
export class DuplicateJobError extends EmdxError {
  constructor (message: string) {
    super('ERR_DUPLICATE_JOB', message)
  }
}

/**
 * A LevelDB-like database that the ledger takes a sublevel of: the node's
 * root database, or memory-level in simulations.
 */
export interface LedgerDatabase {
  sublevel: (name: string, options: { keyEncoding: 'utf8', valueEncoding: 'view' }) => object
}

interface RangeOptions {
  gte?: string
  lt?: string
  reverse?: boolean
  limit?: number
}

/** The operations of an abstract-level sublevel that the ledger uses. */
interface LedgerStore {
  get: (key: string) => Promise<Uint8Array | undefined>
  getMany: (keys: string[]) => Promise<Array<Uint8Array | undefined>>
  put: (key: string, value: Uint8Array) => Promise<void>
  batch: (operations: Array<{ type: 'put', key: string, value: Uint8Array }>) => Promise<void>
  iterator: (options: RangeOptions) => AsyncIterable<[string, Uint8Array]>
  keys: (options: RangeOptions) => AsyncIterable<string>
}

export interface LedgerInit {
  database: LedgerDatabase
  signer: Signer
  /** The database folder, named in errors so that the user knows what to restore. */
  location: string
  startingGrant?: number
  /** Milliseconds since the epoch; tests and simulations pass their own. */
  clock?: () => number
  logger?: Logger
}

export interface LedgerHead {
  /** Seq of the newest entry; -1 for an empty chain. */
  seq: number
  /** Hash of the newest entry's body; 32 zero bytes for an empty chain. */
  hash: Uint8Array
}

export interface LedgerBalance {
  /** Millicredits: grant + earned - spent. */
  balance: number
  grant: number
  earned: number
  spent: number
}

/** One stored entry with its receipt, both decoded. */
export interface LedgerRecord {
  entry: LedgerEntry
  entryBody: LedgerEntryBody
  entryHash: Uint8Array
  receipt: Receipt
  receiptBody: ReceiptBody
}

export interface LedgerVerification {
  valid: boolean
  entries: number
  head: LedgerHead
  balance: LedgerBalance
  /** The first problem found, when `valid` is false. */
  problem?: string
}

export interface ImportResult {
  state: ChainState
  forkProofs: ForkProof[]
}

const ENTRY_PREFIX = 'e:'
const JOB_PREFIX = 'j:'
const WITNESS_PREFIX = 'w:'
const PEER_STATE_PREFIX = 'p:'
const PEER_JOB_PREFIX = 'q:'
const FORK_PREFIX = 'f:'
const HEAD_KEY = 'head'
const SEQ_DIGITS = 16
/**
 * Peers of which the ledger keeps three facts in memory: how much of
 * their chain it verified, the newest entry of theirs it holds, and how much
 * of its chain they verified. The least recently used is forgotten first;
 * the first two are read back from the store when needed again.
 */
const REMEMBERED_PEERS = 4096
const REPLAY_CHUNK_LINKS = 256

const storedLinkSchema = z.strictObject({ entry: ledgerEntrySchema, receipt: receiptSchema })
const storedHeadSchema = z.strictObject({
  seq: z.number().int().min(-1),
  hash: z.instanceof(Uint8Array),
  earned: z.number().int().nonnegative(),
  spent: z.number().int().nonnegative()
})
const storedPeerStateSchema = storedHeadSchema.extend({
  earnedByPayer: z.record(z.string(), z.number().int().nonnegative())
})

function seqKey (seq: number): string {
  return seq.toString().padStart(SEQ_DIGITS, '0')
}

export class Ledger {
  private readonly store: LedgerStore
  private readonly signer: Signer
  private readonly location: string
  private readonly grant: number
  private readonly clock: () => number
  private readonly logger?: Logger
  private state: ChainState
  private readonly forkers = new Set<string>()
  private readonly verifiedByPeer = new Map<string, number>()
  private readonly peerStates = new Map<string, ChainState>()
  private readonly witnessedSeqs = new Map<string, number>()
  /** Appends and imports run one at a time, so that each starts from the head the previous one wrote. */
  private queue: Promise<unknown> = Promise.resolve()

  private constructor (init: LedgerInit, store: LedgerStore) {
    this.store = store
    this.signer = init.signer
    this.location = init.location
    this.grant = init.startingGrant ?? STARTING_GRANT
    this.clock = init.clock ?? Date.now
    this.logger = init.logger
    this.state = emptyChainState(init.signer.peerId)
  }

  /**
   * Opens the ledger in its sublevel, replays the chain and checks the cached
   * head and balance against it. Throws a LedgerCorruptError when they differ
   * or a stored value cannot be decoded.
   */
  static async open (init: LedgerInit): Promise<Ledger> {
    const store = init.database.sublevel('ledger', { keyEncoding: 'utf8', valueEncoding: 'view' }) as LedgerStore
    const ledger = new Ledger(init, store)
    await ledger.load()
    return ledger
  }

  get owner (): string {
    return this.signer.peerId
  }

  head (): LedgerHead {
    return { seq: this.state.seq, hash: this.state.hash }
  }

  balance (): LedgerBalance {
    return {
      balance: chainBalance(this.state, this.grant),
      grant: this.grant,
      earned: this.state.earned,
      spent: this.state.spent
    }
  }

  /** This node's chain state, for its own admission decisions and the simulation. */
  chainState (): ChainState {
    return { ...this.state, earnedByPayer: new Map(this.state.earnedByPayer) }
  }

  isForker (peerId: string): boolean {
    return this.forkers.has(peerId)
  }

  /**
   * Verifies a receipt and appends this node's signed entry for it, in one
   * atomic batch. A rejected receipt appends nothing. It is rejected when it
   * is not signed by both peers or does not name this node. It is also
   * rejected when it does not match the job's terms (another job, peer, price
   * or result, or more credits than the price allows) or its job is already
   * in the ledger.
   */
  async append (receipt: Receipt, terms: JobTerms): Promise<LedgerEntry> {
    return await this.serialize(async () => {
      const body = verifyReceipt(receipt, { countersigned: true })
      checkReceiptMatchesJob(body, terms)

      let role: LedgerEntryBody['role']
      if (body.executor === this.owner) {
        role = 'executor'
      } else if (body.requester === this.owner) {
        role = 'requester'
      } else {
        throw new ReceiptError(`receipt for job ${body.jobId} names neither peer as this node ${this.owner}`)
      }
      // Started before the entry is signed and checked, so the read overlaps that work.
      const recorded = this.store.get(JOB_PREFIX + body.jobId)
      const entry = signLedgerEntry({
        version: 1,
        owner: this.owner,
        seq: this.state.seq + 1,
        prev: this.state.hash,
        receiptHash: receiptHash(receipt),
        role,
        delta: role === 'executor' ? body.credits : -body.credits,
        time: this.clock()
      }, this.signer)
      const next = verifyChainSegment({ owner: this.owner, links: [{ entry, receipt }] }, { base: this.state, signatures: 'none' })
      if (await recorded !== undefined) {
        throw new DuplicateJobError(`job ${body.jobId} is already in the ledger; a receipt is appended once`)
      }

      await this.store.batch([
        { type: 'put', key: ENTRY_PREFIX + seqKey(next.seq), value: encodeCanonical({ entry, receipt: storedReceipt(receipt) }) },
        { type: 'put', key: JOB_PREFIX + body.jobId, value: encodeCanonical(next.seq) },
        { type: 'put', key: HEAD_KEY, value: encodeHead(next) }
      ])
      this.state = next
      this.logger?.debug({ job: body.jobId, seq: next.seq, role, credits: body.credits }, 'appended a ledger entry')
      return entry
    })
  }

  /**
   * Stores a counterparty's signed entry. Returns a fork proof when this node
   * already has a different entry of that owner at the same seq. The proof
   * is stored and the owner is marked as a forker.
   */
  async recordWitness (entry: LedgerEntry): Promise<ForkProof | undefined> {
    return await this.serialize(async () => await this.storeWitnesses([entry]).then(proofs => proofs[0]))
  }

  /** Stores a fork proof received from a peer after verifying it; returns false when it was known. */
  async recordForkProof (proof: ForkProof): Promise<boolean> {
    const verified = createForkProof(proof.entries[0], proof.entries[1])
    if (this.forkers.has(verified.owner)) {
      return false
    }
    await this.store.put(FORK_PREFIX + verified.owner, encodeForkProof(verified))
    this.forkers.add(verified.owner)
    this.logger?.warn({ peer: verified.owner, seq: verified.seq }, 'recorded a fork proof: the peer signed two ledger entries with one seq')
    return true
  }

  async forkProofs (): Promise<ForkProof[]> {
    const proofs: ForkProof[] = []
    for await (const [key, value] of this.store.iterator({ gte: FORK_PREFIX, lt: FORK_PREFIX + '\xff' })) {
      proofs.push(this.decodeStored(key, () => decodeForkProof(value)))
    }
    return proofs
  }

  /**
   * Verifies a segment of another node's chain on top of the part this node
   * verified before (or from seq 0), keeps its entries as witnesses, and
   * returns the peer's new chain state. When an entry that overlaps the
   * verified part differs from it, the result carries the fork proof and the
   * state stays as it was. A segment that starts after the verified part
   * is rejected. So is one that ends before an entry of the peer that this
   * node has, unless `more` marks further segments to come.
   */
  async importSegment (segment: ChainSegment, options: { more?: boolean } = {}): Promise<ImportResult> {
    return await this.serialize(async () => {
      if (segment.owner === this.owner) {
        throw new LedgerEntryError('a node cannot import its own chain')
      }
      const known = await this.peerState(segment.owner)
      const first = segment.links[0] === undefined ? known.seq + 1 : decodeLedgerEntryBody(segment.links[0].entry.body).seq
      if (first > known.seq + 1) {
        throw new LedgerEntryError(`chain segment of ${segment.owner} starts at entry ${first}, but this node has verified it only up to entry ${known.seq}; send it from entry ${known.seq + 1}`)
      }

      // Entries this node verified before are compared as witnesses only:
      // a different entry at a known seq is a fork, not a new chain.
      let overlapLength = 0
      while (overlapLength < segment.links.length) {
        const body = decodeLedgerEntryBody(segment.links[overlapLength]!.entry.body)
        if (body.owner !== segment.owner || body.seq > known.seq) {
          break
        }
        overlapLength++
      }
      const overlap = segment.links.slice(0, overlapLength)
      const fresh = segment.links.slice(overlapLength)
      const forkProofs = await this.storeWitnesses(overlap.map(link => link.entry))
      if (forkProofs.length > 0) {
        return { state: known, forkProofs }
      }

      const jobIds = fresh.map(link => decodeReceiptBody(link.receipt.body).jobId)
      const seen = await this.store.getMany(jobIds.map(jobId => `${PEER_JOB_PREFIX}${segment.owner}:${jobId}`))
      const knownJobs = new Set(jobIds.filter((_jobId, index) => seen[index] !== undefined))
      const state = verifyChainSegment({ owner: segment.owner, links: fresh }, { base: known, isKnownJob: jobId => knownJobs.has(jobId), signatures: 'counterparty' })

      const witnessed = options.more === true ? -1 : await this.highestWitnessedSeq(segment.owner)
      if (witnessed > state.seq) {
        throw new LedgerEntryError(`chain segment of ${segment.owner} ends at entry ${state.seq}, but this node has its entry ${witnessed}, so the segment is missing the peer's newest entries; send the whole chain`)
      }

      forkProofs.push(...await this.storeWitnesses(fresh.map(link => link.entry), true))
      await this.store.batch([
        { type: 'put', key: PEER_STATE_PREFIX + segment.owner, value: encodePeerState(state) },
        ...jobIds.map(jobId => ({ type: 'put' as const, key: `${PEER_JOB_PREFIX}${segment.owner}:${jobId}`, value: new Uint8Array([1]) }))
      ])
      remember(this.peerStates, segment.owner, state)
      return { state, forkProofs }
    })
  }

  /**
   * The part of a peer's chain that this node has verified (an empty chain
   * when none). An executor requests the links from its `seq` on, inclusive,
   * so that a requester that rewrote that entry proves its own fork.
   */
  async verifiedChain (owner: string): Promise<ChainState> {
    const state = await this.peerState(owner)
    return { ...state, earnedByPayer: new Map(state.earnedByPayer) }
  }

  /**
   * The last entry of this node's chain that `peer` verified, as far as this
   * process saw, or undefined. An offer sends its segment from there, which
   * saves the executor a request. A wrong or missing hint costs only that
   * request, because the executor requests what it lacks.
   */
  verifiedBy (peer: string): number | undefined {
    return this.verifiedByPeer.get(peer)
  }

  noteVerifiedBy (peer: string, seq: number): void {
    remember(this.verifiedByPeer, peer, seq)
  }

  /** Links of this node's chain from `fromSeq` on, at most `limit` of them, for another node to verify. */
  async exportSegment (fromSeq = 0, limit = Number.MAX_SAFE_INTEGER): Promise<ChainSegment> {
    const links: ChainLink[] = []
    for await (const [key, value] of this.store.iterator({ gte: ENTRY_PREFIX + seqKey(fromSeq), lt: ENTRY_PREFIX + '\xff', limit })) {
      links.push(this.decodeLink(key, value))
    }
    return { owner: this.owner, links }
  }

  /** The newest `limit` entries with their receipts, newest first. */
  async recent (limit: number): Promise<LedgerRecord[]> {
    const records: LedgerRecord[] = []
    for await (const [key, value] of this.store.iterator({ gte: ENTRY_PREFIX, lt: ENTRY_PREFIX + '\xff', reverse: true, limit })) {
      const link = this.decodeLink(key, value)
      records.push({
        ...link,
        entryBody: decodeLedgerEntryBody(link.entry.body),
        entryHash: ledgerEntryHash(link.entry),
        receiptBody: decodeReceiptBody(link.receipt.body)
      })
    }
    return records
  }

  /**
   * Replays the whole chain checking every signature and link, and compares
   * the result with the cached head. Returns the first problem rather than
   * throwing, so that `receipts --verify` can report it.
   */
  async verify (): Promise<LedgerVerification> {
    const progress = { count: 0 }
    try {
      const state = await this.replay('all', progress)
      if (!sameHead(state, this.state)) {
        return this.verification(false, progress.count, `the chain adds up to entry ${state.seq}, but the cached head is entry ${this.state.seq}`)
      }
      return this.verification(true, progress.count)
    } catch (err) {
      return this.verification(false, progress.count, (err as Error).message)
    }
  }

  async close (): Promise<void> {
    await this.queue
  }

  private verification (valid: boolean, entries: number, problem?: string): LedgerVerification {
    return { valid, entries, head: this.head(), balance: this.balance(), ...(problem === undefined ? {} : { problem }) }
  }

  private async load (): Promise<void> {
    const progress = { count: 0 }
    let replayed: ChainState
    try {
      replayed = await this.replay('none', progress)
    } catch (err) {
      if (err instanceof LedgerCorruptError) {
        throw err
      }
      throw this.corrupt(`the ledger chain in ${this.location} is broken: ${(err as Error).message}`, err)
    }
    const count = progress.count

    const raw = await this.store.get(HEAD_KEY)
    if (raw === undefined) {
      if (count > 0) {
        throw this.corrupt(`the ledger in ${this.location} has ${count} entries but no cached head`)
      }
    } else {
      const cached = this.decodeStored(HEAD_KEY, () => storedHeadSchema.parse(decodeCanonical(raw, 1024)))
      if (!sameHead(cached, replayed) || cached.earned !== replayed.earned || cached.spent !== replayed.spent) {
        throw this.corrupt(`the cached ledger balance in ${this.location} (entry ${cached.seq}, ${chainBalance(cached, this.grant)} millicredits) does not match its chain (entry ${replayed.seq}, ${chainBalance(replayed, this.grant)} millicredits)`)
      }
    }
    this.state = replayed

    for await (const [key, value] of this.store.iterator({ gte: FORK_PREFIX, lt: FORK_PREFIX + '\xff' })) {
      this.forkers.add(this.decodeStored(key, () => decodeForkProof(value)).owner)
    }
  }

  /**
   * Replays the whole chain in chunks of REPLAY_CHUNK_LINKS, yielding to the
   * event loop between chunks: checking every signature of a long chain
   * takes seconds, and the node must keep serving meanwhile.
   */
  private async replay (signatures: 'all' | 'none', progress: { count: number }): Promise<ChainState> {
    let state = emptyChainState(this.owner)
    const seenJobs = new Set<string>()
    let chunk: ChainLink[] = []
    for await (const [key, value] of this.store.iterator({ gte: ENTRY_PREFIX, lt: ENTRY_PREFIX + '\xff' })) {
      chunk.push(this.decodeLink(key, value))
      progress.count++
      if (chunk.length === REPLAY_CHUNK_LINKS) {
        state = verifyChainSegment({ owner: this.owner, links: chunk }, { base: state, signatures, seenJobs })
        chunk = []
        await yieldToEventLoop()
      }
    }
    return verifyChainSegment({ owner: this.owner, links: chunk }, { base: state, signatures, seenJobs })
  }

  private decodeLink (key: string, value: Uint8Array): ChainLink {
    return this.decodeStored(key, () => storedLinkSchema.parse(decodeCanonical(value, 64 * 1024)))
  }

  /** Runs a decoder on a stored value and turns any failure into a LedgerCorruptError naming the key. */
  private decodeStored<T> (key: string, decode: () => T): T {
    try {
      return decode()
    } catch (err) {
      throw this.corrupt(`the ledger value ${key} in ${this.location} cannot be decoded: ${(err as Error).message}`, err)
    }
  }

  private corrupt (problem: string, cause?: unknown): LedgerCorruptError {
    const advice = 'stop the node and restore the data directory from a backup; emdx-node does not rewrite a ledger, because the counterparties hold signed copies of every entry and a rewritten chain would prove a fork'
    return new LedgerCorruptError(this.location, `${problem}; ${advice}`, cause === undefined ? undefined : { cause })
  }

  /** Returns the verified state of a peer's chain, which callers must not change. */
  private async peerState (owner: string): Promise<ChainState> {
    const cached = this.peerStates.get(owner)
    if (cached !== undefined) {
      return cached
    }
    const raw = await this.store.get(PEER_STATE_PREFIX + owner)
    if (raw === undefined) {
      return emptyChainState(owner)
    }
    const stored = this.decodeStored(PEER_STATE_PREFIX + owner, () => storedPeerStateSchema.parse(decodeCanonical(raw, 1024 * 1024)))
    const state = { owner, seq: stored.seq, hash: stored.hash, earned: stored.earned, spent: stored.spent, earnedByPayer: new Map(Object.entries(stored.earnedByPayer)) }
    remember(this.peerStates, owner, state)
    return state
  }

  private async highestWitnessedSeq (owner: string): Promise<number> {
    const cached = this.witnessedSeqs.get(owner)
    if (cached !== undefined) {
      return cached
    }
    let highest = -1
    for await (const key of this.store.keys({ gte: `${WITNESS_PREFIX}${owner}:`, lt: `${WITNESS_PREFIX}${owner}:\xff`, reverse: true, limit: 1 })) {
      highest = Number.parseInt(key.slice(key.lastIndexOf(':') + 1), 10)
    }
    remember(this.witnessedSeqs, owner, highest)
    return highest
  }

  /** Stores entries as witnesses; `signaturesChecked` skips verifying entries that the caller just verified. */
  private async storeWitnesses (entries: LedgerEntry[], signaturesChecked = false): Promise<ForkProof[]> {
    const candidates = entries
      .map(candidate => signaturesChecked
        ? { entry: candidate, body: decodeLedgerEntryBody(candidate.body), hash: ledgerEntryHash(candidate) }
        : verifyLedgerEntry(candidate))
      .filter(verified => verified.body.owner !== this.owner)
    const keys = candidates.map(verified => `${WITNESS_PREFIX}${verified.body.owner}:${seqKey(verified.body.seq)}`)
    const held = keys.length === 0 ? [] : await this.store.getMany(keys)

    const proofs: ForkProof[] = []
    const writes: Array<{ type: 'put', key: string, value: Uint8Array }> = []
    for (const [index, verified] of candidates.entries()) {
      const key = keys[index] as string
      const heldBytes = held[index]
      if (heldBytes === undefined) {
        writes.push({ type: 'put', key, value: encodeCanonical(verified.entry) })
        continue
      }

      const heldEntry = this.decodeStored(key, () => ledgerEntrySchema.parse(decodeCanonical(heldBytes, 4096)))
      if (!bytesEqual(ledgerEntryHash(heldEntry), verified.hash) && !this.forkers.has(verified.body.owner)) {
        const proof = createForkProof(heldEntry, verified.entry)
        writes.push({ type: 'put', key: FORK_PREFIX + proof.owner, value: encodeForkProof(proof) })
        this.forkers.add(proof.owner)
        proofs.push(proof)
        this.logger?.warn({ peer: proof.owner, seq: proof.seq }, 'found a fork: the peer signed two ledger entries with one seq')
      }
    }
    if (writes.length > 0) {
      await this.store.batch(writes)
    }
    for (const verified of candidates) {
      const highest = this.witnessedSeqs.get(verified.body.owner)
      if (highest !== undefined && highest < verified.body.seq) {
        this.witnessedSeqs.set(verified.body.owner, verified.body.seq)
      }
    }
    return proofs
  }


  private async serialize<T> (task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task)
    this.queue = run.catch(() => undefined)
    return await run
  }
}

function storedReceipt (receipt: Receipt): Receipt {
  return receipt.requesterSignature === undefined
    ? { body: receipt.body, executorSignature: receipt.executorSignature }
    : { body: receipt.body, executorSignature: receipt.executorSignature, requesterSignature: receipt.requesterSignature }
}

function sameHead (a: { seq: number, hash: Uint8Array }, b: { seq: number, hash: Uint8Array }): boolean {
  return a.seq === b.seq && bytesEqual(a.hash, b.hash)
}

function encodeHead (state: ChainState): Uint8Array {
  return encodeCanonical({ seq: state.seq, hash: state.hash, earned: state.earned, spent: state.spent })
}

function encodePeerState (state: ChainState): Uint8Array {
  return encodeCanonical({ seq: state.seq, hash: state.hash, earned: state.earned, spent: state.spent, earnedByPayer: Object.fromEntries(state.earnedByPayer) })
}

/** Sets a key as the most recently used of a bounded map, forgetting the least recently used. */
function remember<V> (map: Map<string, V>, key: string, value: V): void {
  map.delete(key)
  if (map.size >= REMEMBERED_PEERS) {
    const oldest = map.keys().next().value
    if (oldest !== undefined) {
      map.delete(oldest)
    }
  }
  map.set(key, value)
}
