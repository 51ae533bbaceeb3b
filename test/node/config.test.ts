import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { CONFIG_FILE_NAME, DEFAULT_API_PORT, loadConfig } from '../../src/node/config.js'
import { ConfigError } from '../../src/node/errors.js'
import { parseSize } from '../../src/node/units.js'
import { makeTempDir } from '../support/temp.js'
import type { SettingsInput } from '../../src/node/config.js'

const machine = { cpus: 2, memoryBytes: 8 * 1024 ** 3 }
const peer = '12D3KooWRm8J3iL796zPFi2EtGGtUJn58AG67gcqzMFHZnnsTzqD'

async function load (flags: SettingsInput, file?: unknown): Promise<ReturnType<typeof loadConfig>> {
  const dir = await makeTempDir()
  if (file !== undefined) {
    await writeFile(path.join(dir, CONFIG_FILE_NAME), typeof file === 'string' ? file : JSON.stringify(file))
  }
  return await loadConfig(dir, flags, machine)
}

async function rejection (flags: SettingsInput, file?: unknown): Promise<string> {
  const error = await load(flags, file).catch((err: unknown) => err)
  expect(error).toBeInstanceOf(ConfigError)
  return (error as Error).message
}

describe('config defaults', () => {
  it('shares one CPU and 2 GiB', async () => {
    const config = await load({})

    expect(config.shareCpu).toBe(1)
    expect(config.shareMem).toBe(2 * 1024 ** 3)
    expect(config.apiPort).toBe(DEFAULT_API_PORT)
    expect(config.mdns).toBe(true)
    expect(config.share).toBe(true)
    expect(config.bootstrap).toEqual([])
  })
})

describe('config file', () => {
  it('supplies settings the flags leave out', async () => {
    const config = await load({ apiPort: '8000' }, { shareCpu: 2, apiPort: 9000, bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${peer}`] })

    expect(config.shareCpu).toBe(2)
    expect(config.apiPort).toBe(8000)
    expect(config.bootstrap).toHaveLength(1)
  })

  it('rejects an unknown key', async () => {
    expect(await rejection({}, { shareCPU: 2 })).toContain('unknown setting "shareCPU"')
  })

  it('rejects invalid JSON naming the file', async () => {
    const message = await rejection({}, '{ shareCpu: 2 ')

    expect(message).toContain(CONFIG_FILE_NAME)
    expect(message).toContain('not valid JSON')
  })

  it('names the key of a bad value', async () => {
    expect(await rejection({}, { shareCpu: 0 })).toContain(`"shareCpu" in`)
  })
})

describe('config validation', () => {
  const cases: Array<[string, SettingsInput, string]> = [
    ['zero CPUs', { shareCpu: '0' }, 'invalid --share-cpu "0": share at least 0.1 CPU, or pass --no-share'],
    ['negative CPUs', { shareCpu: '-1' }, 'invalid --share-cpu "-1"'],
    ['more CPUs than the machine', { shareCpu: '3' }, 'this machine has 2 CPUs; share at most 2'],
    ['non-numeric CPUs', { shareCpu: 'two' }, 'expected a number of CPUs'],
    ['negative memory', { shareMem: '-1g' }, 'invalid --share-mem "-1g": expected a size such as 512m or 4g'],
    ['non-numeric memory', { shareMem: 'lots' }, 'invalid --share-mem "lots"'],
    ['unknown memory unit', { shareMem: '4q' }, 'invalid --share-mem "4q"'],
    ['more memory than the machine', { shareMem: '16g' }, 'this machine has 8 GiB of memory'],
    ['tiny memory', { shareMem: '1k' }, 'share at least 64m'],
    ['port out of range', { port: '70000' }, 'invalid --port "70000": expected a TCP port from 1 to 65535'],
    ['non-numeric API port', { apiPort: 'http' }, 'invalid --api-port "http"'],
    ['malformed multiaddr', { bootstrap: ['127.0.0.1:4777'] }, 'invalid --bootstrap "127.0.0.1:4777": not a multiaddr'],
    ['multiaddr without peer id', { bootstrap: ['/ip4/127.0.0.1/tcp/4777'] }, 'must end with /p2p/<peer id>'],
    ['bad listen host', { listenHost: 'localhost' }, 'invalid --listen-host "localhost"']
  ]

  for (const [name, flags, expected] of cases) {
    it(`rejects ${name}`, async () => {
      expect(await rejection(flags)).toContain(expected)
    })
  }

  it('accepts a fraction of a CPU', async () => {
    expect((await load({ shareCpu: '0.5' })).shareCpu).toBe(0.5)
  })
})

describe('parseSize', () => {
  it('reads binary units', () => {
    expect(parseSize('512m')).toBe(512 * 1024 ** 2)
    expect(parseSize('1.5GiB')).toBe(1.5 * 1024 ** 3)
    expect(parseSize('2048')).toBe(2048)
  })

  it('rejects signs and words', () => {
    expect(parseSize('-1g')).toBeUndefined()
    expect(parseSize('1e9')).toBeUndefined()
    expect(parseSize('')).toBeUndefined()
  })
})

describe('spot check share', () => {
  it('defaults to one in ten', async () => {
    expect((await load({})).spotCheckShare).toBe(0.1)
  })

  it('reads the flag and the file', async () => {
    expect((await load({ spotCheckShare: '0.25' })).spotCheckShare).toBe(0.25)
    expect((await load({}, { spotCheckShare: 1 })).spotCheckShare).toBe(1)
    expect((await load({ spotCheckShare: '0' })).spotCheckShare).toBe(0)
  })

  it('rejects values outside 0 to 1', async () => {
    for (const value of ['1.5', '-0.1', 'often', '']) {
      expect(await rejection({ spotCheckShare: value })).toMatch(/invalid --spot-check-share .*: expected a share from 0 to 1/)
    }
    expect(await rejection({}, { spotCheckShare: '0.5x' })).toMatch(/invalid "spotCheckShare" in .*config\.json/)
  })
})
