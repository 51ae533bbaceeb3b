import { EmdxError } from '../node/errors.js'

/** A stage spec is invalid: unknown image, bad job id, forbidden variable, both or neither of command and agent. */
export class StageSpecError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_STAGE_SPEC', message, options)
  }
}

/** A stage's input archive breaks a limit or contains an entry the node will not write. Nothing was written. */
export class StageInputError extends EmdxError {
  /** The limit or rule that was broken, such as `maxEntries` or `absolutePath`. */
  readonly rule: string

  constructor (rule: string, message: string, options?: ErrorOptions) {
    super('ERR_STAGE_INPUT', message, options)
    this.rule = rule
  }
}

/** The sandbox could not be prepared or controlled (daemon error, mount failure, missing binary). */
export class SandboxError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_SANDBOX', message, options)
  }
}

/** No usable sandbox, or not the one the settings require. */
export class SandboxUnavailableError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_SANDBOX_UNAVAILABLE', message, options)
  }
}
