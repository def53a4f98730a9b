/**
 * Zero-copy header views. Each header module is exported as a namespace because they share
 * accessor names (`check`, `src`, `setDst`, ...): `vxlan.check(buf, off, len)`, `ipv4.src(buf, off)`.
 * Reprs, check-reason objects, MAC helpers and checksum functions have distinct names and are
 * also exported flat.
 */
export * as arp from './arp.js';
export * as ethernet from './ethernet.js';
export * as ipv4 from './ipv4.js';
export * as udp from './udp.js';
export * as vxlan from './vxlan.js';
export * from './checksum.js';
export * from './mac.js';
export { ArpRepr } from './arp.js';
export { EthernetRepr } from './ethernet.js';
export { Ipv4Check, Ipv4Repr, formatIpv4, parseIpv4 } from './ipv4.js';
export { UdpRepr } from './udp.js';
export { VxlanCheck, VxlanRepr } from './vxlan.js';
