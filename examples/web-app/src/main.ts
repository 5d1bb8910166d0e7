// dit-web as a web app uses it: the package's typed API (pkg/dit_web.d.ts), the wasm module and a
// weight file as bundled assets. It draws `?labels=3,1,4` (default) with the page's settings in the
// URL (`steps`, `seed`, `cfg`), on the CPU, and sets `data-state` on <body> when done.
import init, { DitSession, type GeneratedImage, type ModelInfo, type Progress, type Request } from "dit-web";
import wasmUrl from "dit-web/dit_web_bg.wasm";
import weightsUrl from "../../../www/weights/mnist-cpu.safetensors";

const params = new URLSearchParams(location.search);
const status = document.querySelector<HTMLOutputElement>("#status")!;
const progress = document.querySelector<HTMLProgressElement>("#progress")!;
const canvas = document.querySelector<HTMLCanvasElement>("#canvas")!;

/** Draws images side by side, 3x, as the demo page's grid does. */
function draw(images: GeneratedImage[]): void {
  const { width, height } = images[0];
  canvas.width = images.length * width;
  canvas.height = height;
  const context = canvas.getContext("2d")!;
  images.forEach((image, i) => context.putImageData(new ImageData(image.rgba, image.width, image.height), i * width, 0));
  canvas.style.width = `${3 * canvas.width}px`;
  canvas.style.imageRendering = "pixelated";
}

async function main(): Promise<void> {
  await init({ module_or_path: wasmUrl });
  const session = await DitSession.create("cpu");
  const bytes = new Uint8Array(await (await fetch(weightsUrl)).arrayBuffer());
  const info: ModelInfo = session.loadWeights(bytes);
  status.value = `${info.dataset}: ${info.labels.length} labels, ${info.params} parameters`;
  const request: Request = {
    labels: (params.get("labels") ?? "3,1,4").split(","),
    steps: Number(params.get("steps") ?? 20),
    seed: Number(params.get("seed") ?? 0),
    cfg: Number(params.get("cfg") ?? 1),
    preview: true,
  };
  const seen: number[] = [];
  const images = await session.generate(request, (p: Progress) => {
    seen.push(p.step);
    progress.value = p.step / p.total;
    status.value = `step ${p.step} of ${p.total} (t = ${p.t}, network ${p.timing.networkMs.toFixed(0)} ms)`;
    if (p.preview) draw(p.preview);
  });
  draw(images);
  status.value = `${images.map((im) => im.label).join(" ")}: done`;
  document.body.dataset.steps = seen.join(",");
  document.body.dataset.state = "done";
}

main().catch((error: Error) => {
  status.value = error.message;
  document.body.dataset.state = "error";
});
