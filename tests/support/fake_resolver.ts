/** A stand-in for DNS in tests of the outbound address checks. */

/** A resolver answering from a table and recording what it was asked; unknown names fail. */
export function fakeResolver(table: Record<string, string[]>) {
  const asked: string[] = [];
  const resolve = (hostname: string): Promise<string[]> => {
    asked.push(hostname);
    const addresses = table[hostname];
    return addresses
      ? Promise.resolve(addresses)
      : Promise.reject(new Error(`no test address for ${hostname}`));
  };
  return { resolve, asked };
}
