/**
 * The state the dashboard shows, as `GET /api/v1/dashboard` returns it and
 * the event stream sends it. Only types: the page in the browser imports
 * them too. Amounts of credits are in millicredits (1 credit = 1000); times
 * are ISO 8601 strings; durations are milliseconds.
 */
export interface DashboardSnapshot {
  generatedAt: string
  node: NodeView
  network: NetworkView
  work: WorkView
  cascades: CascadeView[]
  credits: CreditsView
  reputation: ReputationView
}

export interface NodeView {
  peerId: string
  version: string
  addresses: string[]
  startedAt: string
  uptimeSeconds: number
  sandbox: {
    backend: string
    runtime: string
    isolation: string
    /** The reason the sandbox is not the strongest one, or that there is none, with the fix. */
    reason?: string
    /** True when stages run under gVisor; anything else shares the host kernel with the stage. */
    gvisor: boolean
  }
  share: {
    enabled: boolean
    cpus: number
    memoryBytes: number
    freeCpus: number
    freeMemoryBytes: number
    runningStages: number
  }
}

export interface NetworkView {
  connectedPeers: number
  routingTableSize: number
  /** Sums over the providers below; this node is not among them. */
  totals: { providers: number, freeCpus: number, totalCpus: number, freeMemoryBytes: number, totalMemoryBytes: number }
  providers: ProviderView[]
}

export interface ProviderView {
  peerId: string
  /** Global trust scaled so that a peer of average trust scores 1; 0 to 1. */
  trust: number
  distrusted: boolean
  /** Millicredits per CPU second, per GiB second of memory and per 1000 agent tokens. */
  price: { perCpuSecond: number, perGibSecond: number, perThousandTokens: number }
  freeCpus: number
  totalCpus: number
  freeMemoryBytes: number
  totalMemoryBytes: number
  runtime: string
  isolation: string
  agents: string[]
  rttMs: number
  fetchedAt: string
}

export interface JobView {
  jobId: string
  /** The requester of a job run here, or the provider of a job sent out. */
  peer: string
  stage: string
  kind: string
  state: string
  outcome?: string
  error?: string
  startedAt: string
  finishedAt?: string
  elapsedMs: number
}

export interface WorkView {
  /** Stages this node runs, or ran lately, for others. */
  executing: JobView[]
  /** Stages this node sent to others. */
  requested: JobView[]
}

/** One of the five stages of a cascade: idea, prompt, analyzed, planned, done. */
export interface CascadeStageView {
  stage: string
  /**
   * `done` once the stage's document exists, `running` while its transform
   * runs, `pending` before, `failed` or `cancelled` when its transform
   * ended so, `skipped` when the cascade starts after it or stops before it.
   */
  state: 'done' | 'running' | 'pending' | 'failed' | 'cancelled' | 'skipped'
  /** The provider that ran the transform to this stage, or runs it now. */
  provider?: string
}

export interface CascadeView {
  id: string
  title: string
  status: string
  remote: boolean
  createdAt: string
  updatedAt: string
  error?: string
  /** The five stages in order. */
  stages: CascadeStageView[]
  /** Stages done out of the stages the cascade covers. */
  progress: { done: number, total: number }
  /** The latest event of a running cascade, for people: "searching for a provider (attempt 2)". */
  activity?: string
}

export interface ReceiptView {
  seq: number
  jobId: string
  role: 'executor' | 'requester'
  counterparty: string
  stage: string
  outcome: string
  /** Signed change of this node's balance, in millicredits. */
  delta: number
  cpuSeconds: number
  appendedAt: string
  /** Both signatures checked anew: the executor's and the requester's countersignature. */
  signatures: { executor: boolean, requester: boolean }
}

export interface CreditsView {
  balance: number
  grant: number
  earned: number
  spent: number
  /** The balance after each ledger entry, oldest first, starting from the grant. */
  history: Array<{ at: string, balance: number }>
  receipts: ReceiptView[]
}

export interface ReputationView {
  computedAt?: string
  peers: Array<{ peer: string, score: number, localScore: number, distrusted: boolean, forker: boolean, backedOffUntil?: string }>
}

/** An event of the dashboard stream besides snapshots: a cascade event as `GET /api/v1/events` sends it. */
export interface DashboardCascadeEvent {
  id: number
  event: { type: string, cascadeId: string, at: string } & Record<string, unknown>
}
