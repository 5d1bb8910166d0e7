// Images side by side on a canvas, in the same layout as the Rust `image::grid` that
// `trainer generate` writes to grid.png: rows of up to 10, 2 black pixels around and between.

export const GRID_PAD = 2;
export const GRID_COLUMNS = 10;

/** `images`: [{width, height, rgba}] of equal size. Sizes the canvas to fit. */
export function drawGrid(canvas, images) {
  if (!images.length) return;
  const { width: w, height: h } = images[0];
  const columns = Math.min(GRID_COLUMNS, images.length);
  const rows = Math.ceil(images.length / columns);
  canvas.width = columns * w + (columns + 1) * GRID_PAD;
  canvas.height = rows * h + (rows + 1) * GRID_PAD;
  const context = canvas.getContext("2d");
  context.fillStyle = "#000";
  context.fillRect(0, 0, canvas.width, canvas.height);
  images.forEach((image, k) => {
    const x = GRID_PAD + (k % columns) * (w + GRID_PAD);
    const y = GRID_PAD + Math.floor(k / columns) * (h + GRID_PAD);
    context.putImageData(new ImageData(new Uint8ClampedArray(image.rgba), w, h), x, y);
  });
}
