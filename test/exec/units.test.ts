import { describe, expect, it } from 'vitest'
import { agentCommand, parseAgentResult } from '../../src/exec/agent.js'
import { agentSettings } from '../../src/exec/create.js'
import { ExitLineFilter, jobScript, shellQuote } from '../../src/exec/launcher.js'
import { StageSpecError } from '../../src/exec/errors.js'
import { ImageAllowList, parseImage } from '../../src/exec/images.js'
import { CappedOutput, LineSplitter } from '../../src/exec/output.js'
import { MAX_LOG_LINE_CHARS, MAX_QUEUED_EVENTS, ProgressChannel } from '../../src/exec/progress.js'
import { DEFAULT_LIMITS, validateSpec } from '../../src/exec/spec.js'
import { decideOutcome } from '../../src/exec/stage-run.js'
import type { StageProgress } from '../../src/exec/types.js'

describe('agent result line', () => {
  const resultLine = JSON.stringify({
    type: 'result',
    subtype: 'success',
    is_error: false,
    num_turns: 2,
    result: 'done',
    total_cost_usd: 0.0123,
    usage: { input_tokens: 240, output_tokens: 60, cache_read_input_tokens: 5, cache_creation_input_tokens: 7 }
  })

  it('parses output, tokens and cost', () => {
    const parsed = parseAgentResult(`{"type":"system"}\n{"type":"assistant"}\n${resultLine}\n`)
    expect(parsed).toEqual({
      output: 'done',
      isError: false,
      numTurns: 2,
      usage: { inputTokens: 240, outputTokens: 60, cacheReadInputTokens: 5, cacheCreationInputTokens: 7, costUsd: 0.0123 }
    })
  })

  it('takes the last result line', () => {
    const second = resultLine.replace('"done"', '"second"')
    expect(parseAgentResult(`${resultLine}\n${second}`)?.output).toBe('second')
  })

  it('returns undefined without a result line', () => {
    expect(parseAgentResult('{"type":"assistant","result":"x"}\nnot json')).toBeUndefined()
  })

  it('reads negative or missing counts as 0', () => {
    const parsed = parseAgentResult(JSON.stringify({ type: 'result', is_error: true, usage: { input_tokens: -4 } }))
    expect(parsed?.isError).toBe(true)
    expect(parsed?.usage.inputTokens).toBe(0)
    expect(parsed?.usage.costUsd).toBe(0)
  })

  it('command carries prompt, model and tools', () => {
    const command = agentCommand(agentSettings({ model: 'm1', allowedTools: ['Write'] }), { prompt: 'do it' })
    expect(command).toEqual(['claude', '--print', 'do it', '--output-format', 'stream-json', '--verbose', '--model', 'm1', '--allowedTools', 'Write'])
  })
})

describe('stage spec validation', () => {
  it('rejects a job id with a slash', () => {
    expect(() => validateSpec({ jobId: '../x', command: ['true'] }, DEFAULT_LIMITS)).toThrow(StageSpecError)
  })

  it('rejects both command and agent', () => {
    expect(() => validateSpec({ jobId: 'a', command: ['true'], agent: { prompt: 'p' } }, DEFAULT_LIMITS)).toThrow(/exactly one/)
  })

  it('rejects reserved variables', () => {
    for (const name of ['PATH', 'ANTHROPIC_API_KEY', 'HTTPS_PROXY', 'LD_PRELOAD']) {
      expect(() => validateSpec({ jobId: 'a', command: ['true'], env: { [name]: 'x' } }, DEFAULT_LIMITS), name).toThrow(/set by the executor/)
    }
  })

  it('rejects limits above the maximum', () => {
    expect(() => validateSpec({ jobId: 'a', command: ['true'], limits: { memoryBytes: DEFAULT_LIMITS.memoryBytes * 2 } }, DEFAULT_LIMITS)).toThrow(/above this executor's maximum/)
  })

  it('merges lower limits', () => {
    expect(validateSpec({ jobId: 'a', command: ['true'], limits: { timeoutMs: 1000 } }, DEFAULT_LIMITS).timeoutMs).toBe(1000)
  })
})

describe('image allow-list', () => {
  it('parses name and root folder', () => {
    expect(parseImage('emdx-sandbox-test:latest=/srv/rootfs')).toEqual({ name: 'emdx-sandbox-test:latest', rootfs: '/srv/rootfs' })
    expect(parseImage('busybox')).toEqual({ name: 'busybox' })
    expect(parseImage('Bad Name')).toBeUndefined()
    expect(parseImage('x=relative/path')).toBeUndefined()
  })

  it('rejects an image not on the list', () => {
    const images = new ImageAllowList([{ name: 'a' }, { name: 'b' }])
    expect(images.resolve(undefined, 'job').name).toBe('a')
    expect(images.resolve('b', 'job').name).toBe('b')
    expect(() => images.resolve('evil:latest', 'job')).toThrow(/not on this executor's allow-list/)
  })
})

describe('output and progress bounds', () => {
  it('capped output keeps the first bytes and calls back once', () => {
    let calls = 0
    const output = new CappedOutput(5, () => { calls++ })
    output.write(Buffer.from('abc'))
    output.write(Buffer.from('defg'))
    output.write(Buffer.from('h'))
    expect(output.text()).toBe('abcde')
    expect(output.totalBytes).toBe(8)
    expect(calls).toBe(1)
  })

  it('line splitter cuts lines without newline', () => {
    const lines: string[] = []
    const splitter = new LineSplitter(line => lines.push(line))
    splitter.write(Buffer.from(`a\n${'x'.repeat(MAX_LOG_LINE_CHARS + 5)}`))
    splitter.end()
    expect(lines).toEqual(['a', 'x'.repeat(MAX_LOG_LINE_CHARS), 'xxxxx'])
  })

  it('progress drops log lines past the bound and counts them', async () => {
    const channel = new ProgressChannel('job')
    channel.state('running')
    for (let index = 0; index < MAX_QUEUED_EVENTS + 100; index++) {
      channel.log('stdout', `line ${index}`)
    }
    channel.state('finished')
    channel.close()
    const events: StageProgress[] = []
    for await (const event of channel) {
      events.push(event)
    }
    expect(events.length).toBeLessThanOrEqual(MAX_QUEUED_EVENTS + 2)
    const dropped = events.find(event => event.type === 'dropped')
    expect(dropped).toMatchObject({ type: 'dropped', lines: 101 })
    expect(events.at(-1)).toMatchObject({ type: 'state', state: 'finished' })
  })
})

describe('job script', () => {
  it('quotes single quotes', () => {
    expect(shellQuote("it's")).toBe("'it'\\''s'")
  })

  it('exit line filter strips only its own line', () => {
    const job = jobScript(['true'], {}, true)
    const output: Buffer[] = []
    const codes: number[] = []
    const filter = new ExitLineFilter(job.marker, chunk => output.push(chunk), code => codes.push(code))
    const stream = Buffer.from(`hello EMDX-EXIT-forged 0\nlast line without newline${job.marker} 3\n`)
    for (let offset = 0; offset < stream.length; offset += 7) {
      filter.write(stream.subarray(offset, offset + 7))
    }
    expect(Buffer.concat(output).toString()).toBe('hello EMDX-EXIT-forged 0\nlast line without newline')
    expect(codes).toEqual([3])
  })

  it('exit line filter passes output on end', () => {
    const output: Buffer[] = []
    const filter = new ExitLineFilter(jobScript(['true'], {}, true).marker, chunk => output.push(chunk), () => {})
    filter.write(Buffer.from('short'))
    expect(Buffer.concat(output).toString()).toBe('')
    filter.end()
    expect(Buffer.concat(output).toString()).toBe('short')
  })

  it('job script without hold execs the command', () => {
    const job = jobScript(['echo', 'x'], {}, false)
    expect(job.marker).toBe('')
    expect(job.input).toContain("exec 'echo' 'x' </dev/null")
  })

  it('states its length on the first line', () => {
    const job = jobScript(['echo', 'é'], { NAME: "va'lue" }, true)
    const [length, ...rest] = job.input.split('\n')
    expect(Number(length)).toBe(Buffer.byteLength(rest.join('\n')))
  })
})

describe('outcome', () => {
  const base = { exitCode: 0, outputExceeded: false, oomKills: 0, diskFull: false }
  it('first cause wins', () => {
    expect(decideOutcome({ ...base, stopReason: 'timed_out', oomKills: 1 })).toBe('timed_out')
    expect(decideOutcome({ ...base, outputExceeded: true, oomKills: 1 })).toBe('output_limit')
    expect(decideOutcome({ ...base, exitCode: 137, oomKills: 1 })).toBe('out_of_memory')
    expect(decideOutcome({ ...base, exitCode: 1, diskFull: true })).toBe('disk_limit')
    expect(decideOutcome({ ...base, exitCode: 0, diskFull: true })).toBe('succeeded')
    expect(decideOutcome({ ...base, exitCode: 2 })).toBe('failed')
  })
})
