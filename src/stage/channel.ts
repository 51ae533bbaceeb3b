import { lpStream } from '@libp2p/utils'
import { z } from 'zod'
import { EmdxError } from '../node/errors.js'
import { decodeCanonical, encodeCanonical } from '../records/canonical.js'
import { MAX_MESSAGE_BYTES } from './messages.js'
import type { StageMessage } from './messages.js'
import type { Stream } from '@libp2p/interface'
import type { LengthPrefixedStream } from '@libp2p/utils'

/** Why a stage stream was reset; each is counted in the node's metrics. */
export type ProtocolViolation = 'timeout' | 'closed' | 'oversized' | 'garbage' | 'unexpected'

/** The other side broke the stage protocol, went silent, or hung up. */
export class StageProtocolError extends EmdxError {
  readonly violation: ProtocolViolation

  constructor (violation: ProtocolViolation, message: string, options?: ErrorOptions) {
    super('ERR_STAGE_PROTOCOL', message, options)
    this.violation = violation
  }
}

/** A schema for each message type a read accepts, by the value of `type`. */
export type Expected = Record<string, { schema: z.ZodType, maxBytes: number }>

type ParsedOf<E extends Expected> = { [K in keyof E]: z.infer<E[K]['schema']> }[keyof E]

const LARGEST_MESSAGE = Math.max(...Object.values(MAX_MESSAGE_BYTES))

/**
 * Typed, size-checked messages over one libp2p stream. Every read has a
 * deadline; a frame larger than the biggest type it may be is refused before
 * it is decoded.
 */
export class StageChannel {
  readonly stream: Stream
  private readonly messages: LengthPrefixedStream<Stream>

  constructor (stream: Stream) {
    this.stream = stream
    // The frame limit of the whole stream; each read then applies the
    // smaller limit of the types it expects.
    this.messages = lpStream(stream, { maxDataLength: LARGEST_MESSAGE, maxBufferSize: LARGEST_MESSAGE * 2 })
  }

  async write (message: StageMessage, signal?: AbortSignal): Promise<void> {
    await this.messages.write(encodeCanonical(message), { signal })
  }

  /** Reads the next message, which must be one of the expected types. */
  async read<E extends Expected> (expected: E, timeoutMs: number, signal?: AbortSignal): Promise<ParsedOf<E>> {
    const maxBytes = Math.max(...Object.values(expected).map(entry => entry.maxBytes))
    const types = Object.keys(expected).join(' or ')
    const deadline = AbortSignal.timeout(timeoutMs)
    const readSignal = signal === undefined ? deadline : AbortSignal.any([signal, deadline])

    let frame: Uint8Array
    try {
      frame = (await this.messages.read({ signal: readSignal })).subarray()
    } catch (err) {
      if (deadline.aborted) {
        throw new StageProtocolError('timeout', `no ${types} message within ${timeoutMs} ms`, { cause: err })
      }
      if (signal?.aborted === true) {
        throw err
      }
      const name = (err as Error).name
      if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError') {
        throw new StageProtocolError('oversized', `a frame while reading ${types} is over ${LARGEST_MESSAGE} bytes`, { cause: err })
      }
      throw new StageProtocolError('closed', `the stream ended while reading ${types}: ${(err as Error).message}`, { cause: err })
    }

    if (frame.byteLength > maxBytes) {
      throw new StageProtocolError('oversized', `a ${types} message of ${frame.byteLength} bytes is over the limit of ${maxBytes}`)
    }

    let value: unknown
    try {
      value = decodeCanonical(frame, maxBytes)
    } catch (err) {
      throw new StageProtocolError('garbage', `a frame while reading ${types} is not canonical CBOR: ${(err as Error).message}`, { cause: err })
    }

    const type = (value as { type?: unknown } | null)?.type
    const entry = typeof type === 'string' ? expected[type] : undefined
    if (entry === undefined) {
      throw new StageProtocolError('unexpected', `expected ${types}, got ${typeof type === 'string' ? type.slice(0, 32) : 'a message without a type'}`)
    }
    if (frame.byteLength > entry.maxBytes) {
      throw new StageProtocolError('oversized', `a ${type as string} message of ${frame.byteLength} bytes is over the limit of ${entry.maxBytes}`)
    }

    const parsed = entry.schema.safeParse(value)
    if (!parsed.success) {
      throw new StageProtocolError('garbage', `invalid ${type as string} message: ${z.prettifyError(parsed.error)}`)
    }
    return parsed.data as ParsedOf<E>
  }

  /** Ends our side of the stream; the other side may still send. */
  async close (signal?: AbortSignal): Promise<void> {
    await this.stream.close({ signal })
  }

  /** Resets the stream at once, for both sides. */
  abort (error: Error): void {
    this.stream.abort(error)
  }
}
