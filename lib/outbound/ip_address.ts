/** Which IP addresses an outbound fetch must not reach: loopback, private, link-local and the like. */

/**
 * Whether an image fetch must not reach this IP address: loopback, private,
 * link-local, unspecified, carrier-grade NAT, multicast, reserved, an IPv6 form
 * embedding one of those, or anything that does not parse as an address.
 */
export function isForbiddenAddress(ip: string): boolean {
  return forbiddenKind(ip) !== undefined;
}

// IP addresses are compared as bytes against prefix tables.

interface AddressRange {
  bytes: Uint8Array;
  bits: number;
  kind: string;
}

function range(cidr: string, kind: string): AddressRange {
  const [address, bits] = cidr.split("/");
  const bytes = parseIpv4(address) ?? parseIpv6(address);
  if (!bytes) throw new TypeError(`Cannot build address range: "${cidr}" is not a CIDR`);
  return { bytes, bits: Number(bits), kind };
}

const IPV4_RANGES: readonly AddressRange[] = [
  range("0.0.0.0/8", "unspecified"),
  range("10.0.0.0/8", "private"),
  range("100.64.0.0/10", "carrier-grade NAT"),
  range("127.0.0.0/8", "loopback"),
  range("169.254.0.0/16", "link-local"),
  range("172.16.0.0/12", "private"),
  range("192.168.0.0/16", "private"),
  range("224.0.0.0/4", "multicast"),
  range("240.0.0.0/4", "reserved"),
];

const IPV6_RANGES: readonly AddressRange[] = [
  range("::/128", "unspecified"),
  range("::1/128", "loopback"),
  range("fc00::/7", "private"),
  range("fe80::/10", "link-local"),
  range("fec0::/10", "site-local"),
  range("ff00::/8", "multicast"),
];

/** IPv6 prefixes that carry an IPv4 address, judged by that address; `at` is its byte offset. */
const IPV6_EMBEDDING_IPV4: readonly (AddressRange & { at: number })[] = [
  { ...range("::ffff:0:0/96", "IPv4-mapped"), at: 12 },
  { ...range("::/96", "IPv4-compatible"), at: 12 },
  { ...range("64:ff9b::/96", "NAT64"), at: 12 },
  { ...range("2002::/16", "6to4"), at: 2 },
];

/** The kind of forbidden range an address falls in ("loopback", "private", …), or undefined when it is public. */
export function forbiddenKind(ip: string): string | undefined {
  const text = ip.startsWith("[") && ip.endsWith("]") ? ip.slice(1, -1) : ip;
  const v4 = parseIpv4(text);
  if (v4) return IPV4_RANGES.find((r) => inRange(v4, r))?.kind;
  const v6 = parseIpv6(text);
  if (!v6) return "unparseable";
  const native = IPV6_RANGES.find((r) => inRange(v6, r));
  if (native) return native.kind;
  const embedding = IPV6_EMBEDDING_IPV4.find((r) => inRange(v6, r));
  if (!embedding) return undefined;
  const v4Kind = IPV4_RANGES.find((r) => inRange(v6.subarray(embedding.at, embedding.at + 4), r));
  return v4Kind && `${v4Kind.kind}, ${embedding.kind}`;
}

function inRange(bytes: Uint8Array, range: AddressRange): boolean {
  if (bytes.length !== range.bytes.length) return false;
  for (let i = 0, bits = range.bits; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((bytes[i] & mask) !== (range.bytes[i] & mask)) return false;
  }
  return true;
}

/** Parses a strict dotted quad (octal-looking parts such as "010" are not guessed at) into bytes. */
export function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p))) return undefined;
  const bytes = parts.map(Number);
  return bytes.every((b) => b <= 255) ? Uint8Array.from(bytes) : undefined;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const zone = text.indexOf("%");
  if (zone === text.length - 1) return undefined;
  const halves = (zone === -1 ? text : text.slice(0, zone)).split("::");
  if (halves.length > 2) return undefined;
  const compressed = halves.length === 2;
  const head = parseGroups(halves[0], !compressed);
  const tail = compressed ? parseGroups(halves[1], true) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (compressed ? missing < 1 : missing !== 0) return undefined;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  return Uint8Array.from(groups.flatMap((g) => [g >> 8, g & 0xff]));
}

function parseGroups(text: string, ipv4Last: boolean): number[] | undefined {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (const [i, part] of parts.entries()) {
    if (ipv4Last && i === parts.length - 1 && part.includes(".")) {
      const v4 = parseIpv4(part);
      if (!v4) return undefined;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    } else if (/^[0-9a-f]{1,4}$/i.test(part)) {
      groups.push(parseInt(part, 16));
    } else {
      return undefined;
    }
  }
  return groups;
}
