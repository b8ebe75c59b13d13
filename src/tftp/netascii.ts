/**
 * Netascii (RFC 764/1350) conversion of a local Unix text file: LF becomes CR LF, a lone CR becomes
 * CR NUL. The same rule as tftpd-hpa, so `tsize` is the converted length.
 * @module
 */

/** Length of `bytes` once converted to netascii. */
export function netasciiLength(bytes: Uint8Array): number {
  let extra = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0x0a || b === 0x0d) extra++;
  }
  return bytes.length + extra;
}

/** Converts `bytes` to netascii (LF -> CR LF, CR -> CR NUL) into a new buffer. */
export function toNetascii(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(netasciiLength(bytes));
  let j = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b === 0x0a) {
      out[j++] = 0x0d;
      out[j++] = 0x0a;
    } else if (b === 0x0d) {
      out[j++] = 0x0d;
      out[j++] = 0x00;
    } else out[j++] = b;
  }
  return out;
}
