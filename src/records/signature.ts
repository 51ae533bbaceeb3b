import { createHash, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import type { KeyObject } from 'node:crypto'

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

/**
 * Public keys of recently seen peers, so that a chain of receipts does not
 * parse the same peer id each time. 16,384 keys take a few MiB and cover
 * the simulation's 10,000 nodes.
 */
const publicKeyCache = new Map<string, KeyObject | null>()
const PUBLIC_KEY_CACHE_SIZE = 16_384

/**
 * Keys of signatures that verified lately. One receipt is checked on
 * arrival, when it is appended, and in every chain segment that contains it.
 * An Ed25519 check took 0.2 to 0.4 ms on the development machine. The key is
 * a SHA-256 of everything the check covered, so only the same domain,
 * signer, signature and message can match. Only successes are kept, and
 * 32,768 keys take a few MiB (an estimate).
 */
const verifiedSignatures = new Set<string>()
const VERIFIED_SIGNATURES_SIZE = 32_768

function verificationKey (domain: SignatureDomain, message: Uint8Array, signature: Uint8Array, peerId: string): string {
  // The domain and the peer id never hold a NUL byte, and the signature has a
  // fixed length, so the parts cannot run into each other.
  return createHash('sha256').update(`${domain}\0${peerId}\0`).update(signature).update(message).digest('base64')
}

function rememberVerified (key: string): void {
  if (verifiedSignatures.size >= VERIFIED_SIGNATURES_SIZE) {
    // Evict the oldest entry: a Set iterates in insertion order.
    const oldest = verifiedSignatures.values().next().value
    if (oldest !== undefined) {
      verifiedSignatures.delete(oldest)
    }
  }
  verifiedSignatures.add(key)
}

function base64url (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url')
}

function signedBytes (domain: SignatureDomain, message: Uint8Array): Uint8Array {
  const prefix = new TextEncoder().encode(`emdx/${domain}/v1\0`)
  const bytes = new Uint8Array(prefix.byteLength + message.byteLength)
  bytes.set(prefix, 0)
  bytes.set(message, prefix.byteLength)
  return bytes
}

/**
 * Creates a Signer from an Ed25519 libp2p key. Signing uses Node's built-in
 * Ed25519, which is about 70 times faster than tweetnacl here; Ed25519
 * signatures are deterministic, so both give the same bytes, and they agree
 * with libp2p's own signatures.
 */
export function createSigner (privateKey: Ed25519PrivateKey, peerId: string): Signer {
  if (peerIdFromPublicKey(privateKey.publicKey).toString() !== peerId) {
    throw new Error(`invalid peer id ${peerId}: it is not the id of this key; derive it from the key with peerIdFromPrivateKey`)
  }
  // `raw` is the 64-byte seed-plus-public-key form. A JWK key with both
  // halves loads about 20 times faster here than PKCS #8 DER, which makes
  // Node derive the public key again.
  const raw = privateKey.raw
  const key = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: base64url(raw.subarray(0, 32)), x: base64url(raw.subarray(32)) }, format: 'jwk' })
  return {
    peerId,
    sign: (domain, message) => {
      const signature = new Uint8Array(sign(null, signedBytes(domain, message), key))
      // A node also verifies its own signatures, for example when it appends
      // a receipt it has just countersigned, so this one is marked verified.
      rememberVerified(verificationKey(domain, message, signature, peerId))
      return signature
    }
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

function publicKeyObject (peerId: string): KeyObject | undefined {
  const cached = publicKeyCache.get(peerId)
  if (cached !== undefined) {
    return cached ?? undefined
  }

  const raw = publicKeyOfPeer(peerId)
  const key = raw === undefined
    ? null
    : createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: base64url(raw) }, format: 'jwk' })
  if (publicKeyCache.size >= PUBLIC_KEY_CACHE_SIZE) {
    // Evict the oldest entry: a Map iterates in insertion order.
    const oldest = publicKeyCache.keys().next().value
    if (oldest !== undefined) {
      publicKeyCache.delete(oldest)
    }
  }
  publicKeyCache.set(peerId, key)
  return key ?? undefined
}

/** Checks a signature by the peer whose id is given; false for any malformed input. */
export function verifySignature (domain: SignatureDomain, message: Uint8Array, signature: Uint8Array, peerId: string): boolean {
  if (signature.byteLength !== SIGNATURE_BYTES) {
    return false
  }
  const publicKey = publicKeyObject(peerId)
  if (publicKey === undefined) {
    return false
  }
  const key = verificationKey(domain, message, signature, peerId)
  if (verifiedSignatures.has(key)) {
    return true
  }
  const valid = verify(null, signedBytes(domain, message), publicKey, signature)
  if (valid) {
    rememberVerified(key)
  }
  return valid
}
