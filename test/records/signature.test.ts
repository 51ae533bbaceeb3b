import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import nacl from 'tweetnacl'
import { describe, expect, it } from 'vitest'
import { createSigner, verifySignature } from '../../src/records/signature.js'

async function newSigner (): Promise<{ signer: ReturnType<typeof createSigner>, raw: Uint8Array, publicKey: Uint8Array }> {
  const privateKey = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(privateKey).toString()
  return { signer: createSigner(privateKey, peerId), raw: privateKey.raw, publicKey: privateKey.publicKey.raw }
}

describe('record signatures', () => {
  it('verify with the signer peer id', async () => {
    const { signer, raw } = await newSigner()
    const message = new TextEncoder().encode('a ledger entry')
    // Signed outside the signer, whose own signatures skip the check.
    const prefixed = new Uint8Array([...new TextEncoder().encode('emdx/ledger-entry/v1\0'), ...message])

    const signature = nacl.sign.detached(prefixed, raw)

    expect(verifySignature('ledger-entry', message, signature, signer.peerId)).toBe(true)
  })

  it('reject another key\'s peer id', async () => {
    const { signer } = await newSigner()
    const other = await generateKeyPair('Ed25519')

    expect(() => createSigner(other, signer.peerId)).toThrow(/is not the id of this key/)
  })

  it('match tweetnacl signatures byte for byte', async () => {
    const { signer, raw } = await newSigner()
    const message = new TextEncoder().encode('a receipt')
    const prefixed = new Uint8Array([...new TextEncoder().encode('emdx/receipt/v1\0'), ...message])

    const signature = signer.sign('receipt', message)

    expect(signature).toEqual(nacl.sign.detached(prefixed, raw))
  })

  it('fail for any change after a success', async () => {
    const { signer } = await newSigner()
    const other = await newSigner()
    const message = new TextEncoder().encode('a countersigned receipt')
    const signature = signer.sign('receipt', message)
    const flipped = Uint8Array.from(signature)
    flipped[0] = (flipped[0] ?? 0) ^ 1

    // The first check is remembered; none of these may hit that memory.
    expect(verifySignature('receipt', message, signature, signer.peerId)).toBe(true)
    expect(verifySignature('receipt', new TextEncoder().encode('a countersigned receipT'), signature, signer.peerId)).toBe(false)
    expect(verifySignature('receipt-countersignature', message, signature, signer.peerId)).toBe(false)
    expect(verifySignature('receipt', message, signature, other.signer.peerId)).toBe(false)
    expect(verifySignature('receipt', message, flipped, signer.peerId)).toBe(false)
    expect(verifySignature('receipt', message, signature, signer.peerId)).toBe(true)
  })

  it('fail in another domain', async () => {
    const { signer } = await newSigner()
    const message = new TextEncoder().encode('a trust report')

    const signature = signer.sign('trust-report', message)

    expect(verifySignature('ledger-entry', message, signature, signer.peerId)).toBe(false)
  })

  it('fail for another peer', async () => {
    const { signer } = await newSigner()
    const { signer: other } = await newSigner()
    const message = new TextEncoder().encode('a receipt')

    const signature = signer.sign('receipt', message)

    expect(verifySignature('receipt', message, signature, other.peerId)).toBe(false)
  })

  it('fail for a malformed peer id', async () => {
    const { signer } = await newSigner()
    const message = new TextEncoder().encode('a receipt')

    const signature = signer.sign('receipt', message)

    expect(verifySignature('receipt', message, signature, 'not-a-peer-id')).toBe(false)
  })
})
