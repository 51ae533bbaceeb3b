import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { bootstrap } from '@libp2p/bootstrap'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import type { Libp2pOptions } from 'libp2p'
import type { Identify } from '@libp2p/identify'
import type { KadDHT, SelectFn, ValidateFn } from '@libp2p/kad-dht'
import type { Ed25519PrivateKey, Libp2p } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'
import type { Datastore } from 'interface-datastore'

/** The DHT protocol of the emdx network, so that a node never joins the public IPFS DHT. */
export const DHT_PROTOCOL = '/emdx/kad/1.0.0'

/**
 * How long a provider record stays valid, and when its owner re-provides it.
 * The same on every node, because the DHT's `providers` TTL options are
 * ignored by kad-dht 16 and only these `reprovide` settings take effect.
 */
export const PROVIDER_VALIDITY_MS = 30 * 60_000

/**
 * Peers asked at once in a DHT query, and the disjoint paths a lookup takes.
 * kad-dht's defaults (10 and 10) send up to a hundred requests at once, so a
 * requester searching four shards spent its CPU on Noise and Yamux and found
 * providers slower. On the development machine, median discovery at 25
 * nodes went from 640 ms to 172 ms with 3 and 1 (bench/discovery.ts). The
 * second path keeps a lookup from depending on a single chain of peers.
 */
export const DHT_ALPHA = 3
export const DHT_DISJOINT_PATHS = 2
export const REPROVIDE_INTERVAL_MS = 5 * 60_000
export const REPROVIDE_THRESHOLD_MS = 10 * 60_000

// A type alias, not an interface: libp2p's ServiceMap needs an index signature.
export type NetworkServices = {
  identify: Identify
  ping: Ping
  dht: KadDHT
}

export type EmdxLibp2p = Libp2p<NetworkServices>

export interface NetworkInit {
  privateKey: Ed25519PrivateKey
  datastore: Datastore
  listenHost: string
  port: number
  bootstrap: string[]
  mdns: boolean
  /** DHT validators and selectors by the first key segment, such as `emdx`. */
  validators?: Record<string, ValidateFn>
  selectors?: Record<string, SelectFn>
  /** Collects libp2p's own metrics, such as a Prometheus registry. */
  metrics?: Libp2pOptions['metrics']
}

/**
 * Creates (without starting) the libp2p node: TCP, Noise, Yamux, identify,
 * ping, bootstrap, mDNS and the private Kademlia DHT.
 */
export async function createNetwork (init: NetworkInit): Promise<EmdxLibp2p> {
  const peerDiscovery: Array<ReturnType<typeof bootstrap> | ReturnType<typeof mdns>> = []
  if (init.bootstrap.length > 0) {
    peerDiscovery.push(bootstrap({ list: init.bootstrap }))
  }
  if (init.mdns) {
    peerDiscovery.push(mdns())
  }

  const host = init.listenHost.includes(':') ? `/ip6/${init.listenHost}` : `/ip4/${init.listenHost}`

  return await createLibp2p({
    // The caller starts the node, so that a failure to listen is reported
    // as a start error with the port and the fix.
    start: false,
    privateKey: init.privateKey,
    datastore: init.datastore,
    addresses: { listen: [`${host}/tcp/${init.port}`] },
    connectionManager: {
      // Connections from this machine skip the per-host rate limit (5 a
      // second by default): every node of a devnet shares one loopback host,
      // and more than five joining at once would be reset.
      allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128']
    },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery,
    metrics: init.metrics,
    services: {
      identify: identify(),
      // The connection monitor pings every connection every 10 s and aborts
      // the connection when a ping fails, and kad-dht pings new contacts
      // through this service. With the default of one ping stream each way,
      // the two collide now and then, and the aborted connection takes its
      // running stage streams with it.
      ping: ping({ maxInboundStreams: 4, maxOutboundStreams: 4 }),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        // A private network on a LAN or loopback: every node serves the DHT
        // and keeps private and loopback addresses. With kad-dht's defaults
        // (client mode until a public address is confirmed, private addresses
        // removed) every routing table stays empty and every query hangs.
        clientMode: false,
        peerInfoMapper: passthroughMapper,
        alpha: DHT_ALPHA,
        disjointPaths: DHT_DISJOINT_PATHS,
        validators: init.validators ?? {},
        selectors: init.selectors ?? {},
        reprovide: {
          validity: PROVIDER_VALIDITY_MS,
          interval: REPROVIDE_INTERVAL_MS,
          threshold: REPROVIDE_THRESHOLD_MS
        }
      })
    }
  })
}
