// Images side by side on a canvas, in the same layout as the Rust `image::grid` that
// `trainer generate` writes to grid.png: rows of up to 10, 2 black pixels around and between.

export const GRID_PAD = 2;
export const GRID_COLUMNS = 10;

/** The CSS size in which the widget shows `count` images of `side` pixels: each at about 84 CSS
 *  pixels (MNIST's 28 at 3x), a whole number of CSS pixels per image pixel. The demo page sizes
 *  its iframe snippet from it too. */
export function displaySize(side, count) {
  const scale = Math.max(1, Math.round(84 / side));
  const cell = (side + GRID_PAD) * scale;
  return { width: Math.min(count, GRID_COLUMNS) * cell, height: Math.ceil(count / GRID_COLUMNS) * cell };
}

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
