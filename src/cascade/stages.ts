import { EmdxError } from '../node/errors.js'

/** The stages of a cascade, in order. Each transform turns a document at one stage into a document at the next. */
export const STAGES = ['idea', 'prompt', 'analyzed', 'planned', 'done'] as const

export type Stage = typeof STAGES[number]

/** A stage name, a flag combination or a title that the cascade cannot use. */
export class StageError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_INVALID_STAGE', message, options)
  }
}

export function isStage (value: unknown): value is Stage {
  return typeof value === 'string' && (STAGES as readonly string[]).includes(value)
}

/** Returns the value as a stage, or throws a StageError that lists the valid names. */
export function parseStage (value: unknown, flag = 'stage'): Stage {
  if (isStage(value)) {
    return value
  }
  throw new StageError(`invalid ${flag} ${JSON.stringify(value)}; use one of ${STAGES.join(', ')}`)
}

/** Returns the stage after `stage`, or undefined for `done`, which is the last. */
export function next (stage: Stage): Stage | undefined {
  return STAGES[STAGES.indexOf(stage) + 1]
}

export function stageIndex (stage: Stage): number {
  return STAGES.indexOf(stage)
}

/** One transform of a cascade: the agent turns a document at `from` into one at `to`. */
export interface Transform {
  from: Stage
  to: Stage
}

/** The flags of `emdx cascade add` and `POST /api/v1/cascade` that choose which transforms run. */
export interface RunFlags {
  /** The stage of the input document; `idea` when missing. */
  stage?: Stage
  /** Run transforms one after another until the stop stage. */
  auto?: boolean
  /** The last stage to reach; implies `auto`. */
  stop?: Stage
  /** Same as `auto` with `stop: 'analyzed'`. */
  analyze?: boolean
  /** Same as `auto` with `stop: 'planned'`. */
  plan?: boolean
}

/** The transforms a cascade runs, resolved from its flags. */
export interface RunPlan {
  start: Stage
  stop: Stage
  auto: boolean
  transforms: Transform[]
}

/**
 * Resolves the flags into the transforms to run. Without `auto`, or a flag
 * that implies it, only the first transform runs. `--stop S` runs up to S.
 * `--analyze` and `--plan` are `--auto` with the stop at `analyzed` and
 * `planned`. Contradicting flags, and a stop that is not after the start
 * stage, raise a StageError.
 */
export function resolveRunPlan (flags: RunFlags): RunPlan {
  const start = flags.stage ?? 'idea'
  const first = next(start)
  if (first === undefined) {
    throw new StageError('a cascade cannot start at stage done because no transform follows it; pass --stage with an earlier stage')
  }

  const stop = resolveStop(flags)
  const auto = flags.auto === true || stop !== undefined
  const last = auto ? (stop ?? 'done') : first
  if (stageIndex(last) <= stageIndex(start)) {
    throw new StageError(`stop stage ${last} is not after start stage ${start}; pass --stop with one of ${STAGES.slice(stageIndex(start) + 1).join(', ')}`)
  }

  const transforms: Transform[] = []
  for (let index = stageIndex(start); index < stageIndex(last); index++) {
    transforms.push({ from: STAGES[index] as Stage, to: STAGES[index + 1] as Stage })
  }
  return { start, stop: last, auto, transforms }
}

function resolveStop (flags: RunFlags): Stage | undefined {
  const requested: Array<[string, Stage]> = []
  if (flags.stop !== undefined) {
    requested.push([`--stop ${flags.stop}`, flags.stop])
  }
  if (flags.analyze === true) {
    requested.push(['--analyze', 'analyzed'])
  }
  if (flags.plan === true) {
    requested.push(['--plan', 'planned'])
  }

  const stops = new Set(requested.map(([, stage]) => stage))
  if (stops.size > 1) {
    throw new StageError(`${requested.map(([flag]) => flag).join(' and ')} contradict each other; pass only one of --stop, --analyze and --plan`)
  }
  return requested[0]?.[1]
}

/**
 * Formats the title of a transform's output document, for example
 * `Add dark mode [idea→prompt]`. `stage` is the input document's stage.
 */
export function documentTitle (title: string, stage: Stage): string {
  const following = next(stage)
  if (following === undefined) {
    throw new StageError(`stage done has no following stage, so no document is produced from it; pass the stage of the transform's input`)
  }
  return `${title.trim()} [${stage}→${following}]`
}
