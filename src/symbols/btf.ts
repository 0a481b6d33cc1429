/**
 * The vmlinux BTF as a type source: carve it from physical memory, parse it, convert it to
 * Volatility ISF types.
 */
export { carveVmlinuxBtf, type CarvedBtf } from './btfCarve.js';
export { btfIsfConversion, btfIsfNames, btfToIsf, type BtfIsfNames } from './btfIsf.js';
export {
  BtfTypes,
  parseBtf,
  type BtfComposite,
  type BtfEnum,
  type BtfField,
  type BtfKind,
  type BtfLocation,
  type BtfMember,
  type BtfNamedKind,
  type BtfType,
} from './btfParse.js';
