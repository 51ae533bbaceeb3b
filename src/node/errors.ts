/**
 * Errors a user can act on. Each message names the value that was wrong and
 * what to do about it; `code` lets callers and tests tell them apart.
 */
export class EmdxError extends Error {
  readonly code: string

  constructor (code: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** A setting from a flag or the config file is invalid. */
export class ConfigError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_INVALID_CONFIG', message, options)
  }
}

/** The identity key file is missing, unreadable, corrupt or too open. */
export class IdentityError extends EmdxError {
  readonly file: string

  constructor (file: string, message: string, options?: ErrorOptions) {
    super('ERR_IDENTITY', message, options)
    this.file = file
  }
}

/** Another emdx-node already uses this data directory. */
export class DataDirLockedError extends EmdxError {
  constructor (message: string, options?: ErrorOptions) {
    super('ERR_DATA_DIR_LOCKED', message, options)
  }
}

/** A file or folder in the data directory cannot be used as it is. */
export class DataDirError extends EmdxError {
  readonly file: string

  constructor (file: string, message: string, options?: ErrorOptions) {
    super('ERR_DATA_DIR', message, options)
    this.file = file
  }
}

/** A port the node must listen on is taken by another process. */
export class PortInUseError extends EmdxError {
  readonly port: number

  constructor (port: number, message: string, options?: ErrorOptions) {
    super('ERR_PORT_IN_USE', message, options)
    this.port = port
  }
}
