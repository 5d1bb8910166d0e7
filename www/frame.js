// embed.html: one <dit-generate> for an iframe, its attributes taken from the URL
// (`embed.html?model=mnist&labels=3,1,4&steps=20&seed=7`; any of the widget's attributes). The
// page tells its parent how large it is (`{type: "dit-web:size", width, height}`), for hosts
// that size the iframe to its content.

const ATTRIBUTES = ["model", "labels", "sampler", "steps", "cfg", "cfg-interval", "seed", "start"];

const params = new URLSearchParams(location.search);
const widget = document.createElement("dit-generate");
for (const name of ATTRIBUTES) {
  if (params.has(name)) widget.setAttribute(name, params.get(name).replaceAll(",", " "));
}
document.body.append(widget);

if (window.parent !== window) {
  new ResizeObserver(() => {
    const { width, height } = document.documentElement.getBoundingClientRect();
    window.parent.postMessage({ type: "dit-web:size", width: Math.ceil(width), height: Math.ceil(height) }, "*");
  }).observe(document.documentElement);
}
