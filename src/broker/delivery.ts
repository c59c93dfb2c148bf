/**
 * Live delivery to one client: the rules are in delivery/ (one file each, applied in the order delivery/index.ts
 * shows). This module is what the rest of the broker imports.
 */
export { installDelivery, deliveryPacketRule, keepsUp, admitStored, type DeliveryOptions, type StoredPacket } from './delivery/index.js'
