// Offline support: the app shell (pages, scripts, wasm) is fetched from the network when online
// and from this cache when not. Weights are cached by worker.js in their own cache, so they are
// downloaded once, not on every visit.

const SHELL = "dit-web-shell-v2";
const FILES = [
  "./", "index.html", "app.js", "client.js", "grid.js", "worker.js", "adapter.js", "style.css", "models.json",
  "dit-widget.js", "embed.html", "frame.js", "frame.css", "post.html", "embed.css", "about.html",
  "pkg/dit_web.js", "pkg/dit_web_bg.wasm",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  // Shells of earlier versions go.
  const old = caches.keys().then((keys) =>
    Promise.all(keys.filter((k) => k.startsWith("dit-web-shell-") && k !== SHELL).map((k) => caches.delete(k))));
  event.waitUntil(old.then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin || url.pathname.endsWith(".safetensors")) {
    return;
  }
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(SHELL).then((cache) => cache.put(event.request, copy)).catch(() => {});
        }
        return response;
      })
      .catch(() => caches.match(event.request, { ignoreSearch: true }).then((hit) => hit || Response.error())),
  );
});
