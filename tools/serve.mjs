#!/usr/bin/env node
// A small static server for www/ (no dependencies): the right MIME types (application/wasm),
// a strict Content-Security-Policy header, symlinks followed (www/pkg -> ../pkg), single byte
// ranges, loopback unless a HOST is given.
// It sends what a static host like GitHub Pages sends for a widget embedded in a post on another
// origin: `Access-Control-Allow-Origin: *` (the post's page fetches the scripts, the wasm, the
// weights and models.json from here) and `Cross-Origin-Resource-Policy: cross-origin`.
//
//   node tools/serve.mjs [DIR=www] [PORT=8080] [HOST=127.0.0.1]     (PORT 0 picks a free port)
// Prints "serving DIR on http://HOST:PORT/" once listening.

import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
  ".json": "application/json", ".wasm": "application/wasm", ".png": "image/png",
  ".gif": "image/gif", ".svg": "image/svg+xml", ".safetensors": "application/octet-stream",
  ".onnx": "application/octet-stream", ".ico": "image/x-icon", ".md": "text/plain; charset=utf-8",
};
export const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; " +
  "img-src 'self' blob: data:; worker-src 'self'; connect-src 'self' https: blob:";

/** Serves `dir`; `csp: false` leaves the Content-Security-Policy header out (the tests' blog on
 *  another origin, which has none of its own), and a string sends that policy instead. */
export function serve(dir, port = 0, host = "127.0.0.1", { csp = true } = {}) {
  const root = resolve(dir);
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
      let file = resolve(join(root, path));
      if (file !== root && !file.startsWith(root + sep)) throw Object.assign(new Error(), { code: "ENOENT" });
      if ((await stat(file)).isDirectory()) file = join(file, "index.html");
      let body = await readFile(file);
      const headers = {
        "content-type": TYPES[extname(file)] || "application/octet-stream",
        ...(csp && { "content-security-policy": typeof csp === "string" ? csp : CSP }),
        "cache-control": "no-cache",
        "access-control-allow-origin": "*",
        "cross-origin-resource-policy": "cross-origin",
        "accept-ranges": "bytes",
      };
      // One byte range (`Range: bytes=A-B`, as a download that fetches part of a file asks).
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
      let status = 200;
      if (range) {
        const [start, end] = [Number(range[1]), Math.min(body.length - 1, range[2] ? Number(range[2]) : body.length - 1)];
        if (start > end) {
          res.writeHead(416, { "content-range": `bytes */${body.length}` });
          res.end();
          return;
        }
        headers["content-range"] = `bytes ${start}-${end}/${body.length}`;
        body = body.subarray(start, end + 1);
        status = 206;
      }
      headers["content-length"] = body.length;
      res.writeHead(status, headers);
      res.end(req.method === "HEAD" ? undefined : body);
    } catch (error) {
      res.writeHead(error.code === "ENOENT" || error.code === "ENOTDIR" ? 404 : 500);
      res.end();
    }
  });
  return new Promise((ok) => server.listen(port, host, () => ok(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir = "www", port = "8080", host = "127.0.0.1"] = process.argv.slice(2);
  const server = await serve(dir, Number(port), host);
  console.log(`serving ${dir} on http://${host}:${server.address().port}/`);
}
