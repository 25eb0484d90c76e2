import { createServer } from 'node:net';
import { join } from 'node:path';

// Pieces for tests that run the real entry point (`tsx src/main.ts`) as a child process.

export const TSX = join('node_modules', '.bin', 'tsx');

/** A port nothing listens on right now, for a child service to take. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

/** Polls `/readyz` until it answers 200 (returned), or throws after `timeoutMs`. */
export async function waitReady(port: number, timeoutMs = 45_000): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (res.status === 200) return res;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('service did not become ready');
    await new Promise((r) => setTimeout(r, 200));
  }
}
