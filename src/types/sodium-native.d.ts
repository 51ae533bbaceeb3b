// The part of sodium-native (libsodium bindings) this project uses. The
// published @types package describes an older major version.
declare module 'sodium-native' {
  export const crypto_secretbox_MACBYTES: number
  export const crypto_secretbox_NONCEBYTES: number
  export const crypto_secretbox_KEYBYTES: number
  export function crypto_secretbox_easy (ciphertext: Uint8Array, message: Uint8Array, nonce: Uint8Array, key: Uint8Array): void
  export function crypto_secretbox_open_easy (message: Uint8Array, ciphertext: Uint8Array, nonce: Uint8Array, key: Uint8Array): boolean
  export function crypto_box_keypair (publicKey: Uint8Array, secretKey: Uint8Array): void
  /** Throws when the result is all zeros, as it is for a public key of low order. */
  export function crypto_scalarmult (shared: Uint8Array, secretKey: Uint8Array, publicKey: Uint8Array): void
}
