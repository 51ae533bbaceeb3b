import { peerIdFromString } from '@libp2p/peer-id'
import nacl from 'tweetnacl'
import type { Ed25519PrivateKey } from '@libp2p/interface'

/**
 * What a signature covers. Each kind of signed record has its own domain, so
 * a signature made for one kind (say a receipt) can never pass as another
 * (say a capacity record) even when the bytes happen to match.
 */
export type SignatureDomain =
  | 'capacity-record'
  | 'receipt'
  | 'receipt-countersignature'
  | 'ledger-entry'
  | 'trust-report'
  | 'fork-proof'
  | 'stage-message'

export const SIGNATURE_BYTES = 64

/** Signs with the node's identity key; components get this, never the key itself. */
export interface Signer {
  readonly peerId: string
  sign: (domain: SignatureDomain, message: Uint8Array) => Uint8Array
}

function signedBytes (domain: SignatureDomain, message: Uint8Array): Uint8Array {
  const prefix = new TextEncoder().encode(`emdx/${domain}/v1\0`)
  const bytes = new Uint8Array(prefix.byteLength + message.byteLength)
  bytes.set(prefix, 0)
  bytes.set(message, prefix.byteLength)
  return bytes
}

/**
 * Creates a Signer from an Ed25519 libp2p key. Its `raw` form is the 64-byte
 * seed-plus-public-key secret key that tweetnacl signs with, so signatures
 * agree with libp2p's own.
 */
export function createSigner (privateKey: Ed25519PrivateKey, peerId: string): Signer {
  const secretKey = privateKey.raw
  return {
    peerId,
    sign: (domain, message) => nacl.sign.detached(signedBytes(domain, message), secretKey)
  }
}

/**
 * The Ed25519 public key embedded in a peer id, or undefined when the string
 * is not a peer id of an Ed25519 key.
 */
export function publicKeyOfPeer (peerId: string): Uint8Array | undefined {
  try {
    const id = peerIdFromString(peerId)
    return id.type === 'Ed25519' ? id.publicKey.raw : undefined
  } catch {
    return undefined
  }
}

/** Checks a signature by the peer whose id is given; false for any malformed input. */
export function verifySignature (domain: SignatureDomain, message: Uint8Array, signature: Uint8Array, peerId: string): boolean {
  if (signature.byteLength !== SIGNATURE_BYTES) {
    return false
  }
  const publicKey = publicKeyOfPeer(peerId)
  if (publicKey === undefined) {
    return false
  }
  return nacl.sign.detached.verify(signedBytes(domain, message), signature, publicKey)
}
