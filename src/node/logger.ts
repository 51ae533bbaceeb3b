import { pino } from 'pino'
import pretty from 'pino-pretty'
import type { Logger } from 'pino'

export type { Logger }

export type LogFormat = 'pretty' | 'json'

export interface LoggerOptions {
  level?: string
  format?: LogFormat
  /** Where log lines go; standard error by default, so standard output stays for results. */
  destination?: NodeJS.WritableStream
}

/**
 * Paths of fields that must never reach a log line, whatever component logs
 * them: payloads, keys and API keys. Pino replaces their values.
 */
const redactedPaths = [
  'payload', '*.payload', 'privateKey', '*.privateKey', 'secretKey', '*.secretKey',
  'apiKey', '*.apiKey', 'env', '*.env', 'headers.authorization', '*.headers.authorization'
]

/**
 * Creates the root logger. Components take a child with `component` set, and
 * add ids (peer, job, cascade) as fields, never inside the message text.
 */
export function createLogger (options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? process.stderr
  const format = options.format ?? ((destination as { isTTY?: boolean }).isTTY === true ? 'pretty' : 'json')
  const settings = {
    level: options.level ?? process.env.EMDX_LOG_LEVEL ?? 'info',
    redact: { paths: redactedPaths, censor: '[redacted]' },
    base: undefined
  }

  if (format === 'pretty') {
    // A synchronous stream in this thread: pino's transport would start a
    // worker thread, which costs memory and loses the last lines on exit.
    const stream = pretty({ destination, sync: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss.l' })
    return pino(settings, stream)
  }
  return pino(settings, destination)
}

/** A logger that drops everything, for tests that are not about logging. */
export function silentLogger (): Logger {
  return pino({ level: 'silent' })
}
